"""What a client may not do: read server files (through the chat history, ``audio_url`` or Gradio's file
routes), upload more than the limit, use the page or the API without the login, or find its words in
the logs; and the share link stays off unless asked for.

"Nothing read" is checked with a named pipe: a FIFO blocks whoever opens it until the test's writer
thread is connected, so the writer learns whether anything on the server opened the file at all.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file

from app.config import ConfigError, DemoConfig, load_config
from app.demo import build_demo, launch_options
from app.handlers import ChatHandlers
from app.openai_api import OpenAIApi, api_routes
from app.openai_protocol import ApiLimits
from app_fixtures import ROOT, ScriptedWorker, component, gradio_call, serving
from audio_samples import tone, write_wav
from tripwire import Tripwire

PASSWD = "root:x:0:0"
SETTINGS = dict(system_prompt="", max_new_tokens=4, temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=-1)


@pytest.fixture
def tripwire(tmp_path):
    wire = Tripwire(tmp_path / "secret recording.wav")
    yield wire
    wire.disarm()


@pytest.fixture(scope="module")
def scripted():
    return ScriptedWorker()


@pytest.fixture(scope="module")
def server(scripted, tmp_path_factory):
    """The demo on a scripted backend (nothing here needs the model), with /v1 and a 1 MB upload limit."""
    config = DemoConfig(examples=False, max_upload_mb=1)
    demo = build_demo(scripted, config, work_dir=tmp_path_factory.mktemp("security-demo"))
    with serving(demo, config, api_routes(scripted, config)) as url:
        yield url.rstrip("/"), demo


@pytest.fixture(scope="module")
def url(server):
    return server[0]


def chat_with_history(url: str, history: list) -> str:
    return gradio_call(url, "chat", [{"text": "hi", "files": []}, history, "", 4, 0.0, 1.0, 0, 1.0, -1, "", "", False])


def file_item(path: str) -> dict:
    """An audio item as gradio_client sends it (with the file marker: Gradio itself checks the path)."""
    return {"type": "file", "file": {"path": path, "meta": {"_type": "gradio.FileData"}}}


# ------------------------------------------------------------------------------- /chat history paths
@pytest.fixture
def upload_folder_link(tmp_path):
    """A symlink inside Gradio's upload folder, pointing out of it."""
    folder = Path(get_upload_folder()) / f"test-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    links = []

    def make(target: Path) -> str:
        link = folder / f"link{len(links)}.wav"
        os.symlink(target, link)
        links.append(link)
        return str(link)

    yield make
    for link in links:
        link.unlink()
    folder.rmdir()


@pytest.mark.parametrize("where", ["temp dir outside the upload folder", "dots out of the upload folder",
                                   "symlink in the upload folder"])
def test_chat_history_audio_outside_the_upload_folder_is_refused_unread(url, scripted, tripwire, upload_folder_link,
                                                                      where):
    path = {
        "temp dir outside the upload folder": str(tripwire.path),
        "dots out of the upload folder": get_upload_folder() + "/x/../.." + str(tripwire.path),
        "symlink in the upload folder": upload_folder_link(tripwire.path),
    }[where]
    calls = len(scripted.calls)
    for item in (component(path), file_item(path)):
        events = chat_with_history(url, [{"role": "user", "content": [item]}])
        assert "event: error" in events and "event: complete" not in events and "Traceback" not in events
        if item["type"] == "component":  # reaches the demo's own check: a sentence naming the file
            assert f"{Path(path).name} was not uploaded through this page" in events
    assert not tripwire.opened, "the server opened a file named in the chat history"
    assert len(scripted.calls) == calls  # nothing went to the model


def test_chat_history_pointing_at_etc_passwd_is_refused(url):
    for item in (component("/etc/passwd"), file_item("/etc/passwd"), component("../../../../../../etc/passwd")):
        events = chat_with_history(url, [{"role": "user", "content": [item]}])
        assert "event: error" in events and PASSWD not in events and "Traceback" not in events
    events = chat_with_history(url, [{"role": "user", "content": [component("/etc/passwd")]}])
    assert "passwd was not uploaded through this page; attach the file again." in events


@pytest.mark.parametrize("shape", ["bare path", "file dict", "file FileData", "file string"])
def test_chat_history_in_other_shapes_is_refused_unread(url, scripted, tripwire, shape):
    """/chat's history is plain JSON that the handler checks: every shape naming a file outside the upload
    folder is refused with a sentence, and the file is never opened."""
    path = str(tripwire.path)
    item = {"bare path": {"path": path}, "file dict": {"file": {"path": path}},
            "file FileData": {"type": "file", "file": {"path": path}}, "file string": {"type": "file", "file": path}}[shape]
    calls = len(scripted.calls)
    events = chat_with_history(url, [{"role": "user", "content": [item]}])
    assert "event: error" in events and "Traceback" not in events
    assert f"{Path(path).name} was not uploaded through this page" in events
    assert not tripwire.opened and len(scripted.calls) == calls


def test_a_path_as_plain_text_in_chat_history_stays_text(url, scripted):
    events = chat_with_history(url, [{"role": "user", "content": ["/etc/passwd"]}])
    assert "event: complete" in events and PASSWD not in events
    assert scripted.calls[-1][0]["content"][0] == {"type": "text", "text": "/etc/passwd"}  # text, not a file


def history_shapes(path: str) -> dict[str, list[dict]]:
    """Every way ``app.history`` reads an audio path out of a display history."""
    question = {"type": "text", "text": "q"}
    return {
        "content is {path}": [{"role": "user", "content": {"path": path}}],
        "{path} item": [{"role": "user", "content": [{"path": path}, question]}],
        "{file: {path}} item": [{"role": "user", "content": [{"file": {"path": path}}, question]}],
        "file item": [{"role": "user", "content": [{"type": "file", "file": {"path": path}}, question]}],
        "file item with meta": [{"role": "user", "content": [file_item(path), question]}],
        "component item": [{"role": "user", "content": [component(path), question]}],
    }


@pytest.mark.parametrize("shape", list(history_shapes("x")))
def test_handlers_refuse_every_shape_of_path_outside_the_upload_folder(tmp_path, tripwire, shape):
    """The handlers' own check, for every shape of history item they read, whatever reaches them."""
    worker = ScriptedWorker()
    handlers = ChatHandlers(worker, DemoConfig(), clips_dir=tmp_path)
    history = history_shapes(str(tripwire.path))[shape]
    with pytest.raises(Exception, match="secret recording.wav was not uploaded through this page"):
        handlers.model_messages(history, "", None, "en")
    assert not tripwire.opened and worker.calls == []


def test_a_plain_string_in_the_history_is_text_not_a_path(tmp_path, tripwire):
    handlers = ChatHandlers(ScriptedWorker(), DemoConfig(), clips_dir=tmp_path)
    history = [{"role": "user", "content": str(tripwire.path)}, {"role": "user", "content": [str(tripwire.path)]}]
    messages = handlers.model_messages(history, "", None, "en")
    assert [item["type"] for item in messages[0]["content"]] == ["text", "text"]
    assert not tripwire.opened


def test_every_event_that_takes_the_chat_history_skips_gradios_preprocessing(server):
    """Gradio's chat preprocessing decodes every audio of the history at the path the client names."""
    _, demo = server
    chatbot = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "chatbot")
    taking_history = [fn for fn in demo.fns.values() if chatbot in fn.inputs]
    assert len(taking_history) >= 6
    assert all(fn.preprocess is False for fn in taking_history), [fn.name for fn in taking_history if fn.preprocess]


def private_event(url: str, elem_id: str, data: list) -> str:
    """Trigger the page's (private) event on the element ``elem_id`` as the browser does; the SSE text."""
    config = httpx.get(f"{url}/config", timeout=10).json()
    target = next(c["id"] for c in config["components"] if c["props"].get("elem_id") == elem_id)
    dependency = next(d for d in config["dependencies"] if any(t[0] == target for t in d["targets"]))
    session = uuid.uuid4().hex[:12]
    joined = httpx.post(f"{url}/gradio_api/queue/join", timeout=10, json={
        "data": data, "fn_index": dependency["id"], "session_hash": session, "event_data": None, "trigger_id": target})
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{url}/gradio_api/queue/data?session_hash={session}", timeout=30) as response:
        return "".join(response.iter_text())


def test_undo_does_not_hand_out_files_named_in_the_history(url, tmp_path, tripwire):
    """Undo puts the last turn's audio back into the input, which Gradio copies into its cache and serves."""
    private = write_wav(tmp_path / "someone elses recording.wav", tone(1.0, 300.0))
    history = [{"role": "user", "content": [component(str(private))]},
               {"role": "user", "content": [component(str(tripwire.path))]},
               {"role": "user", "content": [{"type": "text", "text": "what is this?"}]}]
    events = private_event(url, "undo", [history])
    completed = next(json.loads(line[len("data: "):]) for line in events.splitlines()
                     if line.startswith("data: ") and '"process_completed"' in line)
    chat, textbox = completed["output"]["data"]
    assert chat == [] and textbox["value"] == {"text": "what is this?", "files": []}
    assert "someone elses recording.wav was not uploaded through this page" in events
    assert not tripwire.opened


# ------------------------------------------------------------------------------- /v1 audio_url
@pytest.fixture
def counting_http_server():
    """A local HTTP server that counts the requests it gets (the audio_url fetches that must not happen)."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"RIFF")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], hits
    httpd.shutdown()
    httpd.server_close()


def audio_url_request(url: str, audio_url: str) -> httpx.Response:
    messages = [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": audio_url}},
                                             {"type": "text", "text": "?"}]}]
    return httpx.post(f"{url}/v1/chat/completions", json={"messages": messages}, timeout=30)


@pytest.mark.parametrize("audio_url", [
    "FILE:///etc/passwd", "file:/etc/passwd", "file://localhost/etc/passwd", "//etc/passwd", "/proc/self/environ",
    "..%2F..%2Fetc%2Fpasswd", "jar:file:///etc/passwd!/", "ftp://127.0.0.1/a.wav", "gopher://127.0.0.1:6379/_INFO",
    "http://[::1]/a.wav", "http://0.0.0.0/a.wav", "http://127.1/a.wav", "http://2130706433/a.wav",
    "http://user:pw@127.0.0.1/a.wav", "http://100.100.100.200/latest/meta-data/",
])
def test_audio_url_never_reads_files_or_unlisted_hosts(url, audio_url):
    response = audio_url_request(url, audio_url)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[0]" and "audio" in error["message"].lower()
    assert PASSWD not in response.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "::ffff:127.0.0.1", "0.0.0.0", "169.254.169.254",
                                  "100.100.100.200", "10.1.2.3", "192.168.1.1"])
def test_allowlisted_hosts_that_are_internal_are_not_fetched(scripted, tmp_path, counting_http_server, host):
    port, hits = counting_http_server
    api = OpenAIApi(scripted, model_id="m", limits=ApiLimits(url_allowlist=(host,)))
    config = DemoConfig(examples=False)
    demo = build_demo(scripted, config, work_dir=tmp_path)
    with serving(demo, config, api.routes()) as served:
        literal = f"[{host}]" if ":" in host else host
        response = audio_url_request(served.rstrip("/"), f"http://{literal}:{port}/clip.wav")
        assert response.status_code == 400 and "internal addresses" in response.json()["error"]["message"]
    assert hits == []


# ------------------------------------------------------------------------------- Gradio's file routes
@pytest.mark.parametrize("route", [
    "/gradio_api/file=/etc/passwd", "/gradio_api/file=../../../etc/passwd", "/gradio_api/file=%2Fetc%2Fpasswd",
    "/gradio_api/file=..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/gradio_api/file=%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/gradio_api/file=//etc/passwd", "/gradio_api/file={upload}/../../../../etc/passwd",
    "/gradio_api/file={upload}%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/gradio_api/file=/proc/self/environ",
    "/gradio_api/file={cwd}/app/config.py", "/gradio_api/file=/etc/passwd%00.wav", "/file=/etc/passwd",
    "/file=../../../etc/passwd", "/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/assets/../../../../etc/passwd", "/gradio_api/static/../../../etc/passwd",
    "/gradio_api/proxy=file:///etc/passwd", "/gradio_api/proxy=http://127.0.0.1:22/",
])
def test_gradio_file_routes_do_not_serve_server_files(url, route):
    route = route.replace("{upload}", get_upload_folder()).replace("{cwd}", str(ROOT))
    response = httpx.get(url + route, timeout=10)
    assert response.status_code in (400, 403, 404), (route, response.status_code)
    assert PASSWD not in response.text and "class DemoConfig" not in response.text
    assert "QWEN" not in response.text and "PATH=" not in response.text


# ------------------------------------------------------------------------------- size limits
def test_uploads_over_the_limit_are_refused(url, tmp_path):
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + bytes(1024 * 1024 + 100))
    small = write_wav(tmp_path / "small.wav", tone(1.0))
    refused = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.wav", big.read_bytes())}, timeout=30)
    assert refused.status_code == 413 and "maximum allowed size" in refused.text
    accepted = httpx.post(f"{url}/gradio_api/upload", files={"files": ("small.wav", small.read_bytes())}, timeout=30)
    assert accepted.status_code == 200
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        Client(url, verbose=False).predict(message={"text": "hi", "files": [handle_file(str(big))]}, history=[],
                                           **SETTINGS, api_name="/chat")


def test_api_requests_over_the_limit_are_refused(url):
    audio = base64.b64encode(bytes(1024 * 1024 + 100)).decode()
    part = {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}
    body = {"messages": [{"role": "user", "content": [part]}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 413 and "larger than the limit of 1 MB" in response.json()["error"]["message"]
    # A body too large for any audio is refused before it is read, whether or not it says how large it is.
    huge = b'{"messages": [' + b" " * (3 * 1024 * 1024) + b"]}"
    declared = httpx.post(f"{url}/v1/chat/completions", content=huge, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "larger than the" in declared.json()["error"]["message"]
    chunked = httpx.post(f"{url}/v1/chat/completions", content=iter([huge[i:i + 65536] for i in range(0, len(huge), 65536)]),
                         headers={"content-type": "application/json"})
    assert chunked.status_code == 413


# ------------------------------------------------------------------------------- login
ALICE = ("alice", "wonder:land")  # a password may contain a colon


@pytest.fixture(scope="module")
def protected(scripted, tmp_path_factory):
    users = tmp_path_factory.mktemp("auth") / "users.txt"
    users.write_text("# logins\n\nbob:builder\n")
    config = DemoConfig(examples=False, auth=":".join(ALICE), auth_file=str(users))
    demo = build_demo(scripted, config, work_dir=tmp_path_factory.mktemp("protected-demo"))
    with serving_with_api(demo, config, scripted) as url:
        yield url


@contextmanager
def serving_with_api(demo, config, backend):
    with serving(demo, config, api_routes(backend, config)) as url:
        yield url.rstrip("/")


def test_the_page_and_gradios_api_need_the_login(protected, tmp_path):
    # The page is an empty shell that shows a login form when its /config is refused.
    page = httpx.get(protected + "/", timeout=10)
    assert "scripted test backend" not in page.text and "chatbot" not in page.text
    assert httpx.get(protected + "/config", timeout=10).status_code == 401
    with httpx.Client(base_url=protected, timeout=10) as browser_like:
        assert browser_like.post("/login", data={"username": "alice", "password": "nope"}).status_code == 400
        assert browser_like.post("/login", data={"username": ALICE[0], "password": ALICE[1]}).status_code == 200
        assert "scripted test backend" in browser_like.get("/config").text
    clip = write_wav(tmp_path / "a.wav", tone(1.0))
    assert httpx.post(f"{protected}/gradio_api/upload", files={"files": ("a.wav", clip.read_bytes())}).status_code == 401
    with pytest.raises(Exception):
        Client(protected, verbose=False)
    with pytest.raises(Exception):
        Client(protected, auth=("alice", "wrong"), verbose=False)
    for user in (ALICE, ("bob", "builder")):
        client = Client(protected, auth=user, verbose=False)
        assert client.predict(message={"text": "hi", "files": []}, history=[], **SETTINGS, api_name="/chat").startswith("answer")


def test_the_openai_api_needs_the_login(protected):
    models = f"{protected}/v1/models"
    refused = httpx.get(models, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(models, auth=("alice", "wrong"), timeout=10).status_code == 401
    assert httpx.get(models, auth=ALICE, timeout=10).status_code == 200
    assert httpx.get(models, auth=("bob", "builder"), timeout=10).status_code == 200
    good = openai.OpenAI(base_url=f"{protected}/v1", api_key=":".join(ALICE), max_retries=0)
    reply = good.chat.completions.create(model="scripted/fake-audio-chat", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content.startswith("answer")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{protected}/v1", api_key="alice:wrong", max_retries=0).models.list()
    post = httpx.post(f"{protected}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert post.status_code == 401


def test_with_an_api_key_the_api_takes_the_key_not_the_login(scripted, tmp_path):
    config = DemoConfig(examples=False, auth=":".join(ALICE), api_key="k3y")
    with serving_with_api(build_demo(scripted, config, work_dir=tmp_path), config, scripted) as url:
        assert httpx.get(f"{url}/v1/models", auth=ALICE).status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer k3y"}).status_code == 200
        assert httpx.get(f"{url}/config").status_code == 401  # the page still needs the login


def test_logins_from_flags_files_and_environment(tmp_path):
    users = tmp_path / "users"
    users.write_text("carol:c1\n# dave:old\ndave:d2\n")
    config = load_config(["--auth", "alice:a1", "--auth", "bob:b:1", "--auth-file", str(users)], environ={})
    assert config.credentials == (("alice", "a1"), ("bob", "b:1"), ("carol", "c1"), ("dave", "d2"))
    assert load_config([], environ={"QWEN_DEMO_AUTH": "x:1,y:2"}).credentials == (("x", "1"), ("y", "2"))
    listed = tmp_path / "c.yaml"
    listed.write_text("auth: ['x:1', 'y:2']\n")
    assert load_config(["--config", str(listed)], environ={}).credentials == (("x", "1"), ("y", "2"))
    assert launch_options(config)["auth"] == list(config.credentials)
    assert launch_options(DemoConfig())["auth"] is None and DemoConfig().credentials == ()
    assert "a1" not in repr(config) and "b:1" not in repr(config)


@pytest.mark.parametrize("argv, fragment", [
    (["--auth", "alice"], "auth entry 1 must be user:password"),
    (["--auth", "alice:hunter2,:hunter3"], "auth entry 2 must be user:password"),
    (["--auth", "alice:"], "auth entry 1"),
    (["--auth-file", "/nonexistent/users.txt"], "auth_file /nonexistent/users.txt does not exist"),
])
def test_malformed_logins_are_one_sentence_without_the_password(argv, fragment):
    with pytest.raises(ConfigError, match=fragment) as refused:
        load_config(argv, environ={})
    assert "hunter" not in str(refused.value) and str(refused.value).endswith(".")


def test_a_malformed_auth_file_names_the_line_not_the_password(tmp_path):
    users = tmp_path / "users"
    users.write_text("alice:a1\nbob-hunter2\n")
    with pytest.raises(ConfigError, match=f"auth_file {users} line 2 must be user:password") as refused:
        load_config(["--auth-file", str(users)], environ={})
    assert "hunter2" not in str(refused.value)
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n")
    with pytest.raises(ConfigError, match="holds no user:password line"):
        load_config(["--auth-file", str(empty)], environ={})


def test_the_command_line_refuses_a_malformed_login_in_one_line():
    done = subprocess.run([sys.executable, str(ROOT / "web_demo_audio.py"), "--auth", "alice-hunter2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "auth entry 1 must be user:password" in lines[0] and "hunter2" not in lines[0]


# ------------------------------------------------------------------------------- share link
def test_no_share_link_unless_asked(server):
    _, demo = server
    assert load_config([], environ={}).share is False
    assert launch_options(DemoConfig())["share"] is False
    assert launch_options(DemoConfig(share=True))["share"] is True
    assert demo.share_url is None and demo.share is False


# ------------------------------------------------------------------------------- logs
SECRET = "my-bank-pin-is-7391"


class Everything(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def real_url(worker, tmp_path):
    """The demo and /v1 on the tiny checkpoint's worker: the model layer logs too."""
    config = DemoConfig(examples=False, max_new_tokens=4)
    with serving_with_api(build_demo(worker, config, work_dir=tmp_path / "demo"), config, worker) as url:
        yield url


def test_request_contents_are_not_logged_at_info(real_url, tmp_path, capfd):
    url = real_url
    handler = Everything()
    names = ["", "gradio", "uvicorn", "uvicorn.access", "uvicorn.error", "httpx", "fastapi", "app", "model"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        clip = write_wav(tmp_path / "diary-entry-0412.wav", tone(1.0))
        bad = tmp_path / "tax-return-2024.wav"
        bad.write_bytes(b"not audio at all" * 40)
        client = Client(url, verbose=False)
        text = f"Please remember {SECRET} for me."
        client.predict(message={"text": text, "files": [handle_file(str(clip))]}, history=[], **SETTINGS, api_name="/chat")
        with pytest.raises(Exception, match="tax-return-2024.wav"):
            client.predict(message={"text": text, "files": [handle_file(str(bad))]}, history=[], **SETTINGS,
                           api_name="/chat")
        part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip.read_bytes()).decode(), "format": "wav"}}
        for stream in (False, True):
            body = {"stream": stream, "messages": [
                {"role": "system", "content": f"system {SECRET}"},
                {"role": "user", "content": [part, {"type": "text", "text": text}]}]}
            assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 200
        assert handler.lines, "nothing was captured: the check would prove nothing"
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
    logged = "\n".join(handler.lines)
    assert SECRET not in logged
    # The refusal is logged (a file name may be; the words of the request may not).
    assert "refused (400): tax-return-2024.wav" in logged
    out, err = capfd.readouterr()
    assert SECRET not in out and SECRET not in err
