"""The local status page, /healthz and /metrics (Starlette served by uvicorn in a thread of the
daemon). It sees the running device only through `view.StatusView`, which the runtime hands it,
so nothing here knows how gates, workers or the sync client are assembled."""
