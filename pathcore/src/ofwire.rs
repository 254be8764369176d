//! OpenFlow 1.3 wire bytes for the controller's hottest message: a FlowMod inside an ONF
//! bundle-add (OpenFlow 1.3 bundle extension, EXT-230). Pure encoding, no I/O: the
//! controller's sender packs a thousand of them for a 1,000-intent batch, and each intent
//! brings its own match, so the OXM fields are encoded here rather than in Python.
//!
//! Only unmasked fields in their canonical form are encoded (what os-ken's serialiser would
//! send for them); anything else — an unknown field, a value out of range, an address not
//! written canonically — gives `None`, and the caller lets os-ken serialise the message
//! (which then accepts or refuses it). The controller's tests compare every byte with
//! os-ken's serialiser on generated flows.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// An OXM field's value as the caller gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i128),
    Str(&'a str),
}

const OFP_VERSION: u8 = 4;
const OFPT_EXPERIMENTER: u8 = 4;
const OFPT_FLOW_MOD: u8 = 14;
const OFPMT_OXM: u16 = 1;
const OXM_BASIC: u32 = 0x8000 << 16;
const ONF_EXPERIMENTER_ID: u32 = 0x4F4E_4600;
const ONF_ET_BUNDLE_ADD_MESSAGE: u32 = 2301;
/// Bytes a bundle-add puts before the message it carries.
pub const BUNDLE_ADD_HEADER: usize = 24;
/// The FlowMod's fields between its header and its match.
pub const FLOWMOD_FIXED: usize = 40;
/// The longest match encoded here (its length field is 16 bits; os-ken handles the rest).
const MAX_MATCH: usize = 1024;

/// How a field's value is written.
#[derive(Clone, Copy)]
enum Kind {
    Int(usize),
    Ipv4,
    Mac,
}

/// OXM field number and kind of the fields the controller matches on.
fn field(name: &str) -> Option<(u8, Kind)> {
    Some(match name {
        "in_port" => (0, Kind::Int(4)),
        "eth_dst" => (3, Kind::Mac),
        "eth_src" => (4, Kind::Mac),
        "eth_type" => (5, Kind::Int(2)),
        "ip_dscp" => (8, Kind::Int(1)),
        "ip_proto" => (10, Kind::Int(1)),
        "ipv4_src" => (11, Kind::Ipv4),
        "ipv4_dst" => (12, Kind::Ipv4),
        "tcp_src" => (13, Kind::Int(2)),
        "tcp_dst" => (14, Kind::Int(2)),
        "udp_src" => (15, Kind::Int(2)),
        "udp_dst" => (16, Kind::Int(2)),
        "mpls_label" => (34, Kind::Int(4)),
        _ => return None,
    })
}

/// A MAC address written as six lower-case hex pairs joined by ':' (the only form taken).
fn mac(s: &str) -> Option<[u8; 6]> {
    let b = s.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, o) in out.iter_mut().enumerate() {
        if i > 0 && b[3 * i - 1] != b':' {
            return None;
        }
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *o = (hex(b[3 * i])? << 4) | hex(b[3 * i + 1])?;
    }
    Some(out)
}

/// One OXM TLV (field number, bytes), or None when os-ken must encode it.
pub fn oxm(name: &str, value: &Value<'_>) -> Option<(u8, Vec<u8>)> {
    let (num, kind) = field(name)?;
    let data: Vec<u8> = match (kind, value) {
        (Kind::Int(size), Value::Int(v)) => {
            let top = (1i128 << (8 * size)) - 1;
            if *v < 0 || *v > top {
                return None;
            }
            let be = (*v as u64).to_be_bytes();
            be[8 - size..].to_vec()
        }
        (Kind::Ipv4, Value::Str(s)) => {
            let addr = Ipv4Addr::from_str(s).ok()?;
            if addr.to_string() != *s {
                return None;
            }
            addr.octets().to_vec()
        }
        (Kind::Mac, Value::Str(s)) => mac(s)?.to_vec(),
        _ => return None,
    };
    let head = OXM_BASIC | (u32::from(num) << 9) | data.len() as u32;
    let mut tlv = head.to_be_bytes().to_vec();
    tlv.extend_from_slice(&data);
    Some((num, tlv))
}

/// `ofp_match` of `fields` (OXM, in field-number order, padded to 8 bytes), or None.
pub fn match_bytes(fields: &[(&str, Value<'_>)]) -> Option<Vec<u8>> {
    let mut tlvs = fields
        .iter()
        .map(|(name, value)| oxm(name, value))
        .collect::<Option<Vec<_>>>()?;
    tlvs.sort();
    let body: usize = tlvs.iter().map(|t| t.1.len()).sum();
    let length = 4 + body;
    if length >= MAX_MATCH {
        return None;
    }
    let mut out = Vec::with_capacity(length + 8);
    out.extend_from_slice(&OFPMT_OXM.to_be_bytes());
    out.extend_from_slice(&(length as u16).to_be_bytes());
    for (_, t) in &tlvs {
        out.extend_from_slice(t);
    }
    out.resize(length.div_ceil(8) * 8, 0);
    Some(out)
}

/// A FlowMod (header with `xid`, its `fixed` fields, the match of `fields`, the
/// `instructions` bytes) inside a bundle-add of bundle `bundle_id` with `bundle_flags`; None
/// when the match is not encoded here or the message would be too long.
pub fn bundle_flowmod(
    xid: u32,
    bundle_id: u32,
    bundle_flags: u16,
    fixed: &[u8],
    fields: &[(&str, Value<'_>)],
    instructions: &[u8],
) -> Option<Vec<u8>> {
    if fixed.len() != FLOWMOD_FIXED {
        return None;
    }
    let m = match_bytes(fields)?;
    let inner = 8 + fixed.len() + m.len() + instructions.len();
    let outer = BUNDLE_ADD_HEADER + inner;
    let inner16 = u16::try_from(inner).ok()?;
    let outer16 = u16::try_from(outer).ok()?;
    let mut out = Vec::with_capacity(outer);
    out.extend_from_slice(&[OFP_VERSION, OFPT_EXPERIMENTER]);
    out.extend_from_slice(&outer16.to_be_bytes());
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(&ONF_EXPERIMENTER_ID.to_be_bytes());
    out.extend_from_slice(&ONF_ET_BUNDLE_ADD_MESSAGE.to_be_bytes());
    out.extend_from_slice(&bundle_id.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&bundle_flags.to_be_bytes());
    out.extend_from_slice(&[OFP_VERSION, OFPT_FLOW_MOD]);
    out.extend_from_slice(&inner16.to_be_bytes());
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(fixed);
    out.extend_from_slice(&m);
    out.extend_from_slice(instructions);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ingress_match_is_laid_out_in_field_order_and_padded() {
        let m = match_bytes(&[
            ("eth_type", Value::Int(0x0800)),
            ("ipv4_dst", Value::Str("10.0.0.2")),
            ("ipv4_src", Value::Str("10.0.0.1")),
            ("tcp_dst", Value::Int(80)),
        ])
        .unwrap();
        let want: Vec<u8> = [
            &[0, 1, 0, 32][..],             // OXM, length 4 + 6 + 8 + 8 + 6
            &[0x80, 0, 10, 2, 0x08, 0x00],  // eth_type
            &[0x80, 0, 22, 4, 10, 0, 0, 1], // ipv4_src (11 << 1)
            &[0x80, 0, 24, 4, 10, 0, 0, 2], // ipv4_dst (12 << 1)
            &[0x80, 0, 28, 2, 0, 80],       // tcp_dst (14 << 1)
        ]
        .concat();
        assert_eq!(m, want);
    }

    #[test]
    fn what_os_ken_must_judge_is_not_encoded() {
        for (name, value) in [
            ("ipv4_dst", Value::Str("10.000.0.1")),
            ("ipv4_dst", Value::Str("10.0.0")),
            ("eth_dst", Value::Str("02:00:00:00:00:0A")),
            ("vlan_vid", Value::Int(5)),
            ("tcp_dst", Value::Int(70000)),
            ("tcp_dst", Value::Int(-1)),
            ("eth_type", Value::Str("2048")),
        ] {
            assert_eq!(
                match_bytes(&[(name, value.clone())]),
                None,
                "{name} {value:?}"
            );
        }
        assert!(match_bytes(&[("eth_dst", Value::Str("02:00:00:00:00:0a"))]).is_some());
    }

    #[test]
    fn the_bundle_add_carries_the_flowmod_with_the_same_xid() {
        let fixed = [7u8; FLOWMOD_FIXED];
        let out = bundle_flowmod(
            9,
            3,
            3,
            &fixed,
            &[("in_port", Value::Int(2))],
            &[1, 2, 3, 4],
        )
        .unwrap();
        let inner = 8 + 40 + 16 + 4;
        assert_eq!(out.len(), BUNDLE_ADD_HEADER + inner);
        assert_eq!(&out[..4], &[4, 4, 0, (BUNDLE_ADD_HEADER + inner) as u8]);
        assert_eq!(&out[4..8], &9u32.to_be_bytes());
        assert_eq!(&out[16..24], &[0, 0, 0, 3, 0, 0, 0, 3]);
        assert_eq!(&out[24..32], &[4, 14, 0, inner as u8, 0, 0, 0, 9]);
        assert_eq!(&out[32..72], &fixed);
        assert_eq!(&out[out.len() - 4..], &[1, 2, 3, 4]);
        assert_eq!(bundle_flowmod(9, 3, 3, &fixed[1..], &[], &[]), None);
    }
}
