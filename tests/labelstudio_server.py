"""A real Label Studio server for the integration and browser tests, started through scripts/labelstudio.sh.

The first use migrates a data dir once into .cache/labelstudio/test-template (~25-50 s); every test session
copies it (the script's LS_TEMPLATE) and starts in a few seconds. One server per pytest session, shared by
tests/integration and tests/browser through a module-level singleton.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "labelstudio.sh"
TEMPLATE = ROOT / ".cache" / "labelstudio" / "test-template"
TOKEN_ENV = "ACD_TEST_LABEL_STUDIO_TOKEN"  # the pipeline reads the token from here (review.label_studio.token_env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudioServer:
    def __init__(self, data_dir: Path, document_root: Path, port: int | None = None):
        self.data_dir, self.document_root = Path(data_dir), Path(document_root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.user = "admin@acd.local"
        self.start_seconds: list[float] = []

    def _env(self, template: Path | None = TEMPLATE) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "LS_"))}
        env.update(LS_DATA_DIR=str(self.data_dir), LS_PORT=str(self.port), LS_DOCUMENT_ROOT=str(self.document_root))
        if template:
            env["LS_TEMPLATE"] = str(template)
        return env

    def start(self, template: Path | None = TEMPLATE) -> float:
        t0 = time.monotonic()
        r = subprocess.run([str(SCRIPT), "start"], env=self._env(template), capture_output=True, text=True, timeout=900)
        if r.returncode:
            raise RuntimeError(f"label studio did not start:\n{r.stderr[-3000:]}")
        self.start_seconds.append(time.monotonic() - t0)
        return self.start_seconds[-1]

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop"], env=self._env(), capture_output=True, text=True, timeout=120)

    def alive(self) -> bool:
        return subprocess.run([str(SCRIPT), "status"], env=self._env(), capture_output=True).returncode == 0

    @property
    def token(self) -> str:
        return (self.data_dir / "acd-token").read_text().strip()

    @property
    def password(self) -> str:
        return (self.data_dir / "acd-password").read_text().strip()

    def review_cfg(self, **extra) -> dict:
        """A recipe `review:` block pointing at this server (the token travels by env, never in cfg)."""
        os.environ[TOKEN_ENV] = self.token
        ls = {"url": self.url, "token_env": TOKEN_ENV, "document_root": str(self.document_root)}
        # A test's own projects: the server is shared by the session, and project_prefix lives under label_studio.
        if "project_prefix" in extra:
            ls["project_prefix"] = extra.pop("project_prefix")
        return {"review": {"compliance_bar": 0.95, "confidence": 0.95, "margin": 0.03, "label_studio": ls, **extra}}

    def client(self):
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=self.token)


def ensure_template() -> Path:
    """Migrate a data dir once (file-locked, so parallel sessions do not race) and keep it as the template."""
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    with open(TEMPLATE.parent / "template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (TEMPLATE / "label_studio.sqlite3").exists() and (TEMPLATE / "acd-token").exists():
            return TEMPLATE
        tmp = TEMPLATE.with_name("test-template.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        srv = LabelStudioServer(tmp, TEMPLATE.parent)
        try:
            srv.start(template=None)
        finally:
            srv.stop()
        for junk in ("labelstudio.pid", "labelstudio.log"):
            (tmp / junk).unlink(missing_ok=True)
        os.replace(tmp, TEMPLATE)
        return TEMPLATE


_SERVER: LabelStudioServer | None = None


def session_server(tmp_path_factory) -> LabelStudioServer:
    """The session's server: a copy of the template under the session's temp dir, whose `docroot/` is
    the local-files document root (test run dirs are created inside it)."""
    global _SERVER
    if _SERVER is None:
        ensure_template()
        base = tmp_path_factory.mktemp("labelstudio")
        (base / "docroot").mkdir()
        srv = LabelStudioServer(base / "data", base / "docroot")
        srv.start()
        _SERVER = srv
    return _SERVER


def stop_session_server() -> None:
    global _SERVER
    if _SERVER is not None:
        _SERVER.stop()
        _SERVER = None


# ---- test data: real small media files and PAIR_SCHEMA rows in a run dir under the document root ----

def jpeg_bytes(i: int) -> bytes:
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (160, 120), (30 + 7 * i % 200, 90, 160))
    ImageDraw.Draw(img).ellipse((20 + i % 60, 20, 90 + i % 60, 90), fill=(230, 40, 40))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def mp4_bytes(i: int, frames: int = 12) -> bytes:
    import tempfile

    import av
    import numpy as np

    # faststart (moov atom first, so a browser can start playing before the end) rewrites the file: needs a path.
    tmp = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)
    tmp.close()
    with av.open(tmp.name, "w", format="mp4", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        for f in range(frames):
            arr = np.zeros((96, 128, 3), np.uint8)
            arr[:, :, 1] = 60 + i % 100
            x = (f * 8 + i) % 100
            arr[30:60, x:x + 24] = (240, 200, 20)
            for pkt in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    data = Path(tmp.name).read_bytes()
    os.unlink(tmp.name)
    return data


def wav_bytes(i: int, seconds: float = 0.5, sr: int = 16000) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


MAKERS = {"image": (jpeg_bytes, "jpg"), "video": (mp4_bytes, "mp4"), "audio": (wav_bytes, "wav")}


def make_lot(run_dir: Path, modality: str, lot_id: str, n_pairs: int, n_media: int, seed: int = 1):
    """n_pairs PAIR_SCHEMA rows over n_media real files stored like the ingest stage stores them.
    Returns (pairs table, {media_key: uri})."""
    from acd.records import PAIR_SCHEMA, rows_to_table
    from acd.sources.base import store_media

    make, ext = MAKERS[modality]
    media = [store_media(make(i + zlib.crc32(lot_id.encode()) % 50), ext, Path(run_dir) / "media") for i in range(n_media)]
    rows = []
    for i in range(n_pairs):
        key, _ = media[i % n_media]
        qcc = i % 5 == 0
        rows.append(dict(
            pair_id=f"{lot_id}-p{i:03d}", lot_id=lot_id, modality=modality, media_key=key,
            instruction_type="instance", control="content", length_key="none", is_qcc=qcc,
            rejection_strategy="identical" if qcc else "hallucination", split="train", seed=seed,
            instruction=f"Describe the red object in this {modality} ({i}).",
            chosen=f"A red object moves across a blue field ({lot_id} {i}).",
            rejected=(f"A red object moves across a blue field ({lot_id} {i})." if qcc
                      else f"A green dragon flies over a castle ({lot_id} {i})."),
            check_passed=True, judge_score=0.8 + (i % 20) / 100, backend="grounded",
        ))
    return rows_to_table(rows, PAIR_SCHEMA), dict(media)


class Forwarder:
    """A plain TCP relay from 127.0.0.1:<port> to a real Label Studio: closed until start(), so a recipe can
    point at a Label Studio that is down, then comes back at the same URL (a build's recipe is fixed)."""

    def __init__(self, target_port: int, port: int | None = None):
        self.target_port, self.port = target_port, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: socket.socket | None = None

    def start(self) -> "Forwarder":
        import threading

        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        def accept() -> None:
            while True:
                try:
                    client, _ = srv.accept()
                except OSError:
                    return
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
            except OSError:
                pass
            self._server.close()
            self._server = None
