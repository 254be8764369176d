//! PyO3 binding of [`crate::tunnels::TunnelTable`]: reads the controller's intents and
//! hosts, interns their names and the actions its `hop` callable gives, and hands the plan
//! changes back as tuples. No bookkeeping lives here.

use rustc_hash::FxHashMap as HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString, PyTuple};

use crate::tunnels::{ActionId, Event, Ingress, IntentId, Label, Name, Target, TunnelTable, Want};

/// Event kinds as `TunnelTable.update` and `drop_idle` return them.
const EV_SEGMENT: u8 = 0;
const EV_HEAD: u8 = 1;
const EV_DROP: u8 = 2;

/// The MPLS tunnel segments and heads in use (see the controller's `tunnels.py`).
#[pyclass(module = "pathcore._pathcore", name = "TunnelTable")]
pub struct PyTunnelTable {
    t: TunnelTable,
    /// name -> interned id
    names: Py<PyDict>,
    name_objs: Vec<Py<PyString>>,
    /// action -> interned id
    actions: Py<PyDict>,
    action_objs: Vec<Py<PyAny>>,
    /// (node, link id) -> the action a tunnel flow sends a packet over that link with
    hop: Py<PyAny>,
    /// label -> the tuple of labels a packet pushed with it carries (fixed while it lives)
    chains: HashMap<Label, Py<PyTuple>>,
    /// (label, action or None) -> the tuple `ingress` answers with
    outs: HashMap<(Label, Option<ActionId>), Py<PyTuple>>,
}

/// The most answers of `ingress` kept (each a label and an action: they never go stale).
const OUTS_MAX: usize = 1 << 16;

/// Intern `name` (a str) in `names` / `objs` / `t`.
fn intern_name(
    t: &mut TunnelTable,
    names: &Bound<'_, PyDict>,
    objs: &mut Vec<Py<PyString>>,
    name: &Bound<'_, PyAny>,
) -> PyResult<Name> {
    if let Some(id) = names.get_item(name)? {
        return id.extract();
    }
    let s = name
        .cast::<PyString>()
        .map_err(|_| PyValueError::new_err(format!("a name must be a str, not {name:?}")))?;
    let id = t.intern(s.to_str()?, s.repr()?.to_str()?);
    names.set_item(name, id)?;
    objs.push(s.clone().unbind());
    Ok(id)
}

fn intern_action(
    actions: &Bound<'_, PyDict>,
    objs: &mut Vec<Py<PyAny>>,
    action: Bound<'_, PyAny>,
) -> PyResult<ActionId> {
    if let Some(id) = actions.get_item(&action)? {
        return id.extract();
    }
    let id = objs.len() as ActionId;
    actions.set_item(&action, id)?;
    objs.push(action.unbind());
    Ok(id)
}

impl PyTunnelTable {
    fn intern(&mut self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<Name> {
        intern_name(&mut self.t, self.names.bind(py), &mut self.name_objs, name)
    }

    /// What `intent` wants of the table: its tunnel (a path across switches, not
    /// protected, both hosts known) or none. `targets`: the tunnels found in this update by
    /// links tuple (its address, kept alive in `keep`) and egress port.
    fn want<'py>(
        &mut self,
        py: Python<'py>,
        intent: &Bound<'py, PyAny>,
        hosts: &Bound<'py, PyDict>,
        targets: &mut HashMap<(usize, i64), Target>,
        keep: &mut Vec<Bound<'py, PyAny>>,
        events: &mut Vec<Event>,
    ) -> PyResult<Want> {
        let id: IntentId = intent.getattr(intern!(py, "id"))?.extract()?;
        let bare = Want::Bare { id };
        let path = intent.getattr(intern!(py, "path"))?;
        let links = intent.getattr(intern!(py, "links"))?;
        let spec = intent.getattr(intern!(py, "spec"))?;
        // a tuple as the routes are; any sequence does
        if path.is_none() || links.is_none() || path.len()? < 2 {
            return Ok(bare);
        }
        if spec.getattr(intern!(py, "protection"))?.is_truthy()? {
            return Ok(bare);
        }
        let dst_name = spec.getattr(intern!(py, "dst"))?;
        let Some(dst) = hosts.get_item(&dst_name)? else {
            return Ok(bare);
        };
        if !hosts.contains(spec.getattr(intern!(py, "src"))?)? {
            return Ok(bare);
        }
        let port: i64 = dst.getattr(intern!(py, "port_no"))?.extract()?;
        let tkey = (links.as_ptr() as usize, port);
        let target = match targets.get(&tkey) {
            Some(&t) => t,
            None => {
                let t = self.route_target(py, id, &path, &links, port, events)?;
                targets.insert(tkey, t);
                keep.push(links);
                t
            }
        };
        let group = (
            self.intern(py, &path.get_item(0)?)?,
            self.intern(py, &dst_name)?,
        );
        Ok(Want::Rides { id, group, target })
    }

    /// The tunnel of intent `id`'s route (`path`, `links`, egress `port`): its first
    /// segment's label, made with the rest if new, and the action its ingress leaves by.
    fn route_target(
        &mut self,
        py: Python<'_>,
        id: IntentId,
        path: &Bound<'_, PyAny>,
        links: &Bound<'_, PyAny>,
        port: i64,
        events: &mut Vec<Event>,
    ) -> PyResult<Target> {
        let mut nodes: Vec<Name> = Vec::new();
        for n in path.try_iter()? {
            nodes.push(self.intern(py, &n?)?);
        }
        let lk: Vec<u32> = links.extract()?;
        if lk.len() + 1 < nodes.len() {
            return Err(PyValueError::new_err(format!(
                "intent {id}: {} links for a path of {} switches",
                lk.len(),
                nodes.len()
            )));
        }
        let (hop, actions) = (self.hop.bind(py), self.actions.bind(py));
        let (name_objs, action_objs) = (&self.name_objs, &mut self.action_objs);
        let mut failed: Option<PyErr> = None;
        let mut hop_fn = |node: Name, link: u32| -> ActionId {
            hop.call1((name_objs[node as usize].bind(py), link))
                .and_then(|a| intern_action(actions, action_objs, a))
                .unwrap_or_else(|e| {
                    failed.get_or_insert(e);
                    0
                })
        };
        let first = self.t.segment(&nodes, &lk, 1, port, &mut hop_fn, events);
        let action = hop_fn(nodes[0], lk[0]);
        match failed {
            Some(e) => Err(e),
            None => Ok(Target { first, action }),
        }
    }

    fn chain<'py>(
        &mut self,
        py: Python<'py>,
        first: Label,
        chain: &[Label],
    ) -> PyResult<Bound<'py, PyTuple>> {
        if let Some(c) = self.chains.get(&first) {
            return Ok(c.bind(py).clone());
        }
        let c = PyTuple::new(py, chain.iter())?;
        self.chains.insert(first, c.clone().unbind());
        Ok(c)
    }

    fn events<'py>(&mut self, py: Python<'py>, events: Vec<Event>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for e in events {
            let item = match e {
                Event::Segment {
                    label,
                    node,
                    next,
                    port,
                } => {
                    let (nl, act) = match next {
                        Some((n, a)) => (
                            n.into_pyobject(py)?.into_any(),
                            self.action_objs[a as usize].bind(py).clone(),
                        ),
                        None => (py.None().into_bound(py), py.None().into_bound(py)),
                    };
                    PyTuple::new(
                        py,
                        [
                            EV_SEGMENT.into_pyobject(py)?.into_any(),
                            label.into_pyobject(py)?.into_any(),
                            self.name_objs[node as usize].bind(py).clone().into_any(),
                            nl,
                            act,
                            port.into_pyobject(py)?.into_any(),
                        ],
                    )?
                }
                Event::Head {
                    label,
                    node,
                    target,
                } => PyTuple::new(
                    py,
                    [
                        EV_HEAD.into_pyobject(py)?.into_any(),
                        label.into_pyobject(py)?.into_any(),
                        self.name_objs[node as usize].bind(py).clone().into_any(),
                        target.first.into_pyobject(py)?.into_any(),
                        self.action_objs[target.action as usize].bind(py).clone(),
                    ],
                )?,
                Event::Drop { label } => {
                    self.chains.remove(&label);
                    PyTuple::new(
                        py,
                        [
                            EV_DROP.into_pyobject(py)?.into_any(),
                            label.into_pyobject(py)?.into_any(),
                        ],
                    )?
                }
            };
            out.append(item)?;
        }
        Ok(out)
    }
}

#[pymethods]
impl PyTunnelTable {
    /// `hop(node, link_id)`: the action a tunnel flow at `node` sends a packet over pathcore
    /// link `link_id` with (a hashable value, compared by equality); labels are taken from
    /// `label_min` on, `label_space` of them.
    #[new]
    fn new(
        py: Python<'_>,
        hop: Py<PyAny>,
        label_min: u32,
        label_space: u32,
    ) -> PyResult<PyTunnelTable> {
        if label_space == 0
            || label_min
                .checked_add(label_space)
                .is_none_or(|end| end > 1 << 20)
        {
            return Err(PyValueError::new_err(format!(
                "labels {label_min}..{label_min}+{label_space} do not fit MPLS's 20 bits"
            )));
        }
        Ok(PyTunnelTable {
            t: TunnelTable::new(label_min, label_space),
            names: PyDict::new(py).unbind(),
            name_objs: Vec::new(),
            actions: PyDict::new(py).unbind(),
            action_objs: Vec::new(),
            hop,
            chains: HashMap::default(),
            outs: HashMap::default(),
        })
    }

    /// Put every intent of `changed` (objects with `id`, `path`, `links`, `spec` with `src`,
    /// `dst`, `protection`) on its tunnel and head, take the ids `removed` off theirs;
    /// `hosts`: host name -> record with `port_no`. Returns (ids of other intents whose head
    /// changed with them, sorted; the plan's changes: `(0, label, node, next label, action,
    /// egress port)` a new segment (next and action None: the last, which pops), `(1, label,
    /// node, first label, action)` a head's flow, `(2, label)` a flow gone). An intent that
    /// rides no tunnel gets `mpls_label` None and `mpls_labels` ().
    fn update<'py>(
        &mut self,
        py: Python<'py>,
        changed: &Bound<'py, PyAny>,
        removed: Vec<IntentId>,
        hosts: &Bound<'py, PyDict>,
    ) -> PyResult<(Vec<IntentId>, Bound<'py, PyList>)> {
        let mut events: Vec<Event> = Vec::new();
        let mut wants: Vec<Want> = Vec::new();
        let mut bare: Vec<Bound<'py, PyAny>> = Vec::new();
        // intents routed together share one links tuple: its tunnel is looked up once
        let mut targets: HashMap<(usize, i64), Target> = HashMap::default();
        let mut keep: Vec<Bound<'py, PyAny>> = Vec::new(); // holds the tuples keyed by address
        for item in changed.try_iter()? {
            let intent = item?;
            let want = self.want(py, &intent, hosts, &mut targets, &mut keep, &mut events)?;
            if matches!(want, Want::Bare { .. }) {
                bare.push(intent);
            }
            wants.push(want);
        }
        let extra = self.t.update(&wants, &removed, &mut events);
        let empty = PyTuple::empty(py);
        for intent in bare {
            intent.setattr(intern!(py, "mpls_label"), py.None())?;
            intent.setattr(intern!(py, "mpls_labels"), &empty)?;
        }
        Ok((extra, self.events(py, events)?))
    }

    /// What `intent`'s ingress flow does (after `update`): `(label, None)` push its head's
    /// label and go to the heads' table; `(label, action)` push its tunnel's first label and
    /// leave by `action`; None: it rides no tunnel. Sets its `mpls_label` and
    /// `mpls_labels`.
    fn ingress<'py>(
        &mut self,
        py: Python<'py>,
        intent: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let id: IntentId = intent.getattr(intern!(py, "id"))?.extract()?;
        let (key, chain) = match self.t.ingress(id) {
            None => {
                intent.setattr(intern!(py, "mpls_label"), py.None())?;
                intent.setattr(intern!(py, "mpls_labels"), PyTuple::empty(py))?;
                return Ok(None);
            }
            Some(Ingress::Head { label, chain }) => ((label, None), chain),
            Some(Ingress::Tunnel { target, chain }) => ((target.first, Some(target.action)), chain),
        };
        // the answers are values (a label and an action): one tuple for each, made once
        let out = match self.outs.get(&key) {
            Some(o) => o.bind(py).clone(),
            None => {
                let action = match key.1 {
                    Some(a) => self.action_objs[a as usize].bind(py).clone(),
                    None => py.None().into_bound(py),
                };
                let o = PyTuple::new(py, [key.0.into_pyobject(py)?.into_any(), action])?;
                if self.outs.len() >= OUTS_MAX {
                    self.outs.clear();
                }
                self.outs.insert(key, o.clone().unbind());
                o
            }
        };
        let labels = self.chain(py, chain[0], &chain)?;
        intent.setattr(intern!(py, "mpls_label"), out.get_item(0)?)?;
        intent.setattr(intern!(py, "mpls_labels"), labels)?;
        Ok(Some(out))
    }

    /// Remove the segments nothing refers to any more; the plan's changes (as `update`'s).
    fn drop_idle<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut events = Vec::new();
        self.t.drop_idle(&mut events);
        self.events(py, events)
    }

    /// The first label of the tunnel head `label` points at (None: not a head).
    fn head_target(&self, label: Label) -> Option<Label> {
        self.t.head_target(label)
    }

    /// The first label of the tunnel a packet pushed with `label` rides: a head's target,
    /// or `label` itself.
    fn first_segment(&self, label: Label) -> Label {
        self.t.head_target(label).unwrap_or(label)
    }

    /// The ids of the intents whose ingress pushes head `label` (a new set).
    fn head_riders<'py>(&self, py: Python<'py>, label: Label) -> PyResult<Bound<'py, PySet>> {
        PySet::new(py, self.t.head_riders(label))
    }

    /// label -> sorted ids of the intents whose traffic carries it, by label.
    fn riders<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (label, ids) in self.t.riders() {
            out.set_item(label, ids)?;
        }
        Ok(out)
    }
}
