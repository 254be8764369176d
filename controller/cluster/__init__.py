"""Several controllers, one network: members sharing operator state in etcd, with one
master per switch (OpenFlow roles fenced by ``generation_id``). See docs/cluster.md."""
