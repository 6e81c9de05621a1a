"""Live attribution: which process, container and pod opened each egress flow.

- `sockets.py`: the socket of a flow (inode, owner uid) from the kernel's sock_diag netlink.
- `procfs.py`: socket inode -> pid (a bounded, rate-limited scan of /proc/*/fd), and what
  /proc says of a process (name, executable, uid, cgroup).
- `cgroup.py`: container id and Kubernetes pod UID from a process's cgroup paths (Docker,
  containerd, CRI-O, podman; systemd and cgroupfs drivers; cgroup v1 and v2).
- `owner.py`: the `Owner` record and how it appears in events.
- `component.py`: the pipeline component; looks flows up on a worker thread so capture never
  waits, and never guesses: a flow whose socket is gone by then is `unknown`.
"""
