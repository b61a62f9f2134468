"""HTTP at the device's edge: listeners served inside the daemon (`server`) and what they serve
(`push`: AI cameras' e-bike reports). Above sync (it reuses the inbound checks), below runtime
(which starts the listeners)."""
