"""HTTP at the device's edge: listeners served inside the daemon (`server`) and what they serve
(`push`: AI cameras' e-bike reports; `status`: the local status page, /healthz and /metrics,
which sees the running device only through `view.StatusView`). Above sync (it reuses the
inbound checks), below runtime (which starts the listeners and hands the page its view)."""
