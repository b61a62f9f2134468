"""Assembly: builds the store, models, directory and gates from one Config.

Everything is created lazily, so `gatectl residents list` never loads a model and `gatectl run`
loads each ONNX session once for all gates. `run`, `replay`, `demo`, the tests and the
benchmarks all get their pipelines from here; only the frame source and the relay differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

from gatectl.access.point import AccessPoint
from gatectl.analysis.engine import Analyst
from gatectl.analysis.sensors import SensorWatch
from gatectl.analysis.strangers import StrangerBook
from gatectl.analysis.tailgate import TailgateWatch
from gatectl.config import Config
from gatectl.config.gates import FaceQuality, GateConfigBase
from gatectl.config.run import DEFAULT_PROVIDERS
from gatectl.control.clock import ClockWatch
from gatectl.control.controls import Controls
from gatectl.domain.access import make_entry_checks
from gatectl.gates.base import Gate
from gatectl.gates.registry import build_gate
from gatectl.hw.display import Display
from gatectl.hw.outputs import Outputs
from gatectl.hw.relay import Relay, SimulatedRelay
from gatectl.people.directory import Directory
from gatectl.people.enroll import Enroller
from gatectl.store import Store
from gatectl.store.backup import StoreHold
from gatectl.store.recorder import EventRecorder, EventSpool
from gatectl.vision.face.analyzer import FaceAnalyzer
from gatectl.vision.face.detect import FaceDetector
from gatectl.vision.face.embedder import Embedder, make_embedder
from gatectl.vision.face.liveness import LivenessModel
from gatectl.vision.models import ModelError, ModelStore

if TYPE_CHECKING:  # imported where used: the MQTT stack loads only when needed
    from gatectl.sync.client import SyncClient
    from gatectl.sync.snapshots import SnapshotBlur
    from gatectl.vision.objects import TiledDetector
    from gatectl.web.server import HttpServer


def simulated_boards(cfg: Config) -> dict[str, Relay]:
    """In-memory stand-ins for every configured board: replay must never drive hardware."""
    return {b.name: SimulatedRelay(b.channels, b.inputs) for b in cfg.boards}


SITE_MODELS = "models"  # the site's installed models, in the state folder (`gatectl models`)
BLUR_LONG_SIDE = 960  # bystanders are small in a door camera's frame: detect at a finer scale
BLUR_DETECT_THRESHOLD = 0.5  # a missed face is a privacy loss, a blurred background is none


class App:
    def __init__(
        self,
        cfg: Config,
        data_dir: Path,
        boards: dict[str, Relay] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        site_models: Path | None = None,
    ):
        """``boards`` replaces the configured relay boards by name (tests, replay, demo);
        ``clock`` and ``monotonic`` are the wall and monotonic clocks the clock watch compares;
        ``site_models``: the site's model folder, default ``models/`` in ``data_dir`` (replay
        on a scratch store passes the real one)."""
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.site_models = site_models or self.data_dir / SITE_MODELS
        self.clock = clock
        self.monotonic = monotonic
        self._boards = boards or {}
        self._extra_stores: list[Store] = []
        self._access_points: dict[str, AccessPoint] = {}

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else self.data_dir / p

    @property
    def store_path(self) -> Path:
        return self.path(self.cfg.storage.database)

    @cached_property
    def store(self) -> Store:
        sync = self.cfg.sync
        return Store(self.store_path, clock=self.clock, publish=sync.enabled,
                     publish_snapshots=sync.snapshots, outbox_max=sync.outbox_max,
                     snapshot_kinds=frozenset(sync.snapshot_kinds))

    @cached_property
    def store_hold(self) -> StoreHold:
        """The daemon's lock on its store (taken by `Runner.run`, checked by `restore`)."""
        return StoreHold(self.store_path)

    @property
    def snapshot_dir(self) -> Path:
        return self.path(self.cfg.storage.snapshots)

    @cached_property
    def recorder(self) -> EventRecorder:
        s = self.cfg.storage
        spool = EventSpool(
            self.store.path.with_name(self.store.path.name + ".spool"), s.spool_max_kb * 1024
        )
        return EventRecorder(
            self.store,
            self.snapshot_dir,
            s.snapshot_jpeg_quality,
            spool=spool,
            lock_wait_s=s.lock_wait_ms / 1000,
        )

    @cached_property
    def clockwatch(self) -> ClockWatch:
        """Whether the wall clock may drive time-based rules (re-enrollment, retention)."""
        return ClockWatch(
            self.clock, self.monotonic, self.cfg.clock.jump_s, self.cfg.clock.settle_s
        )

    @cached_property
    def boards(self) -> dict[str, Relay]:
        from gatectl.hw.serial.port import make_board  # pyserial only when a board is used

        return {b.name: self._boards.get(b.name) or make_board(b) for b in self.cfg.boards}

    @cached_property
    def outputs(self) -> Outputs:
        return Outputs(self.cfg.outputs, self.boards)

    @cached_property
    def controls(self) -> Controls:
        return Controls(self.cfg, self.outputs, self.recorder)

    @cached_property
    def display(self) -> Display:
        return Display(self.cfg.display)

    @cached_property
    def models(self) -> ModelStore:
        run = self.cfg.run
        store = ModelStore(
            self.cfg.models.dir,
            run.intra_op_threads or self.cfg.models.intra_op_threads,
            self.site_models,
            providers=run.providers_of,
            inter_op_threads=run.inter_op_threads,
        )
        files = {  # a site's own detector file is named by its stem
            Path(f).stem for g in self.cfg.gates if (f := getattr(getattr(g, "detector", None),
                                                               "file", None)) is not None
        }
        for model in run.providers:  # a typo would silently leave that model on the CPU
            if model != DEFAULT_PROVIDERS and model not in store.registry and model not in files:
                raise ModelError(f"run.providers.{model}: no model named '{model}' "
                                 f"(`gatectl models list` shows them)")
        return store

    @cached_property
    def embedder(self) -> Embedder:
        return make_embedder(self.cfg.models, self.models)

    @cached_property
    def liveness(self) -> LivenessModel:
        return LivenessModel(self.models)

    @cached_property
    def directory(self) -> Directory:
        """Reads through its own connection: its poller thread must never see, or run inside,
        a transaction the gate workers have open on the writer connection."""
        d = Directory(
            Store(self.store.path, clock=self.clock),
            self.embedder.model_id,
            self.embedder.dim,
            self.cfg.enrollment.duplicate_threshold,
        )
        d.refresh()
        return d

    def analyzer(self, quality: FaceQuality, detect_threshold: float, long_side: int,
                 liveness: bool, liveness_threshold: float,
                 share_from: float | None = None) -> FaceAnalyzer:
        detector = FaceDetector(self.models, long_side, detect_threshold, share_from=share_from)
        return FaceAnalyzer(detector, self.embedder, self.liveness if liveness else None,
                            quality, liveness_threshold)

    def enrollment_analyzer(self) -> FaceAnalyzer:
        e = self.cfg.enrollment
        return self.analyzer(e.quality, e.detect_threshold, 640, e.liveness, e.liveness_threshold)

    def enroller(self) -> Enroller:
        """Enrollment over this App's store, directory and models (the analyzer loads here)."""
        e = self.cfg.enrollment
        return Enroller(self.enrollment_analyzer(),
                        lambda: self.analyzer(e.quality, e.detect_threshold, 640, liveness=False,
                                              liveness_threshold=0.0),
                        self.directory, self.store, lambda files: self.recorder.delete_files(files),
                        self.embedder.model_id,
                        e, self.cfg.storage, self.snapshot_dir)

    def access_point(self, door: str) -> AccessPoint:
        """The door's credential decision path, one per door: the face gate's camera and the
        door's readers share it (a card+pin or face+card is completed across them)."""
        point = self._access_points.get(door)
        if point is None:
            from gatectl.core.keys import load_public_key

            cfg = self.cfg
            point = self._access_points[door] = AccessPoint(
                door, cfg.access, self.store, self.directory, self.recorder, self.controls,
                make_entry_checks(cfg.policy.entry_checks), cfg.policy.reenroll_after_days,
                self.rule_time,
                {kid: load_public_key(text) for kid, text in cfg.sync.command_keys.items()},
                cfg.device.site, cfg.storage.lock_wait_ms / 1000)
        return point

    @property
    def access_points(self) -> dict[str, AccessPoint]:
        """The doors' access points built so far (the runner's health lists them)."""
        return dict(self._access_points)

    @cached_property
    def strangers(self) -> StrangerBook:
        """Where the face gates keep unknown faces for the repeated-stranger rule."""
        return StrangerBook(self.store, self.cfg.analysis.strangers,
                            self.cfg.storage.lock_wait_ms / 1000)

    @cached_property
    def analyst(self) -> Analyst:
        """The behaviour rules over this store, on the trusted time base. They read the history
        on a connection of their own: a long read must not hold the writer connection's lock,
        which the gates' events wait on."""
        reader = Store(self.store.path, clock=self.clock)
        self._extra_stores.append(reader)
        return Analyst(self.cfg.analysis, reader, self.recorder, self.snapshot_dir,
                       self.strangers, self.rule_time)

    @cached_property
    def sensors(self) -> SensorWatch:
        """The named sensor inputs, read on the supervisor's poll."""
        return SensorWatch(self.cfg.inputs, self.boards, self.recorder, self.monotonic)

    def tailgate_watches(self) -> list[TailgateWatch]:
        """One watch per ``[[analysis.tailgate]]`` door, over its person detector's class 0
        (one model run per frame it looks at: no tiles) and, with ``faces``, YuNet at the camera
        frame's own scale (no upscaling past 640 px)."""
        out = []
        for i, t in enumerate(self.cfg.analysis.tailgate):
            faces = FaceDetector(self.models, 640, t.face_threshold) if t.faces else None
            out.append(TailgateWatch(t, self.person_detector(i), partial(self.controls.door_view,
                                     t.door), self.recorder, faces))
        return out

    def person_detector(self, i: int) -> TiledDetector:
        """The person detector of the ``i``-th ``[[analysis.tailgate]]`` watch, its model
        verified and checked against what the watch reads (a YOLOX layout, class 0, 416 px):
        a wrong model stops `run` - and fails the doctor - with one line naming the key."""
        from gatectl.vision.objects import open_detector

        t = self.cfg.analysis.tailgate[i]
        where = f"analysis.tailgate[{i}]"
        try:
            session = self.models.session(t.model)
        except ModelError as exc:
            raise ModelError(f"{where}.model = '{t.model}': {exc}") from None
        return open_detector(session, "yolox", 416, {"person": 0}, t.threshold, 1, where)

    def rule_time(self) -> float:
        """The wall time time-based rules use: the clock watch's trusted base."""
        return self.clockwatch.rule_time()

    def gate(self, gate: GateConfigBase) -> Gate:
        """The pipeline of one configured gate, whatever its kind (`gatectl.gates.registry`)."""
        return build_gate(self, gate)

    def gates(self) -> list[Gate]:
        return [self.gate(g) for g in self.cfg.gates]

    def sync_client(self, health: Callable[[], dict], reload: Callable[[], str]) -> SyncClient:
        """The MQTT client with its command handler and replicator (paho is imported only here).
        Bad keys, certificates or password files raise ConfigError (one line, naming the key)."""
        from gatectl.config.base import ConfigError
        from gatectl.core.keys import load_public_key
        from gatectl.core.refusals import Refusals
        from gatectl.sync.client import SyncClient
        from gatectl.sync.commands import CommandHandler
        from gatectl.sync.enrollment import DuplicateRule, Replicator
        from gatectl.sync.lists import ListReplicator
        from gatectl.sync.signing import Verifier
        from gatectl.sync.topics import Topics

        s = self.cfg.sync
        keys = {}
        for kid, text in s.command_keys.items():
            try:
                keys[kid] = load_public_key(text)
            except ValueError as exc:
                raise ConfigError([f"sync.command_keys.{kid}: {exc}"]) from None
        # the sync thread reads the outbox on a connection of its own (never inside another
        # thread's open transaction)
        store = Store(
            self.store.path,
            clock=self.clock,
            publish=s.enabled,
            publish_snapshots=s.snapshots,
            outbox_max=s.outbox_max,
            snapshot_kinds=frozenset(s.snapshot_kinds),
        )
        self._extra_stores.append(store)
        replicator = Replicator(
            store,
            self.embedder.model_id,
            self.embedder.dim,
            self.recorder.delete_files,
            keys=keys,
            site=self.cfg.device.site,
            device=self.cfg.device.id,
            duplicates=DuplicateRule(
                Directory(store, self.embedder.model_id, self.embedder.dim),
                self.cfg.enrollment.duplicate_threshold,
            ),
            clock=self.clock,
            skew_s=s.clock_skew_s,
        )
        verifier = Verifier(
            keys, self.cfg.device.id, store, max_ttl_s=s.command_max_ttl_s, skew_s=s.clock_skew_s
        )
        refusals = Refusals(s.refusals_per_s, s.refusal_burst)  # one budget per topic kind, shared
        handler = CommandHandler(
            verifier,
            store,
            self.recorder,
            self.controls,
            replicator,
            reload,
            self.clock,
            refusals,
            display=self.display,
        )
        topics = Topics(s.prefix, self.cfg.device.site, self.cfg.device.id)
        return SyncClient(
            s,
            topics,
            store,
            self.snapshot_dir,
            replicator,
            handler.handle,
            health,
            self.clock,
            refusals,
            upload_filter=self.snapshot_blur() if s.blur_others else None,
            lists=ListReplicator(store, keys=keys, site=self.cfg.device.site,
                                 device=self.cfg.device.id, clock=self.clock,
                                 skew_s=s.clock_skew_s),
        )

    def push_server(self) -> HttpServer:
        """The listener AI cameras post e-bike reports to (`web.push`); an address in use or a
        bad certificate raises ServeError (one line, naming the key)."""
        from gatectl.core.refusals import Refusals
        from gatectl.web.push import PushEndpoint
        from gatectl.web.server import HttpServer

        p = self.cfg.push
        endpoint = PushEndpoint(p, self.controls.camera_report, self.clock, Refusals())
        tls = (p.tls_cert, p.tls_key) if p.tls_cert and p.tls_key else None
        return HttpServer(endpoint.app(), p.host, p.port, "push", tls)

    def snapshot_blur(self) -> SnapshotBlur:
        """`[sync] blur_others`: the face detector (its own instance: the sync thread's) finds
        the faces to blur in uploaded snapshots."""
        from gatectl.sync.snapshots import SnapshotBlur

        detector = FaceDetector(self.models, BLUR_LONG_SIDE, BLUR_DETECT_THRESHOLD)
        return SnapshotBlur(lambda image: [f.box for f in detector.detect(image)],
                            {g.name for g in self.cfg.gates if g.kind == "face"},
                            self.cfg.storage.snapshot_jpeg_quality)

    def close(self) -> None:
        for extra in self._extra_stores:
            extra.close()
        if "boards" in self.__dict__:
            for board in self.boards.values():
                board.close()
        if "directory" in self.__dict__:
            self.directory.stop()
            self.directory.store.close()
        if "store" in self.__dict__:
            self.store.close()
        if "store_hold" in self.__dict__:
            self.store_hold.release()
