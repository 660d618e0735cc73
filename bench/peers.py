"""Peer systems measured beside idhooks in the same run: adnanh/webhook (Debian's `webhook` package) and
Node-RED (from npm, into a temporary folder). A peer that cannot be installed is skipped with a message:
benchmarks report what they could measure, they do not fail for a missing peer."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from bench.procs import Proc, free_port


def ensure_debian_program(program: str, purpose: str, without: str) -> str | None:
    """`program` (a Debian package of that name), installed with apt-get when missing (root only); prints
    `without` and returns None when it cannot be."""
    found = shutil.which(program)
    if found is None and shutil.which("apt-get"):
        print(f"  installing {program} (apt-get install {program}) {purpose} ...")
        subprocess.run(["apt-get", "install", "-y", "-q", program], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = shutil.which(program)
    if found is None:
        print(f"  {program} is not installed and could not be installed: {without}")
    return found


def ensure_webhook() -> str | None:
    """adnanh/webhook (Debian's `webhook` package)."""
    return ensure_debian_program("webhook", "for the comparison with adnanh/webhook", "its figures are skipped")


def start_webhook(program: str, folder: Path, secret: str) -> Proc:
    """adnanh/webhook with the hook of the issue's comparison: the HMAC-SHA256 of the raw body must match
    X-Hub-Signature, a regex must find the event URI in the body, then it runs /bin/true and answers 202."""
    hooks = [{
        "id": "asgardeo",
        "execute-command": "/bin/true",
        "success-http-response-code": 202,
        "trigger-rule": {"and": [
            {"match": {"type": "payload-hmac-sha256", "secret": secret,
                       "parameter": {"source": "header", "name": "X-Hub-Signature"}}},
            {"match": {"type": "regex", "regex": "event-type/loginFailed",
                       "parameter": {"source": "raw-request-body"}}},
        ]},
    }]
    (folder / "hooks.json").write_text(json.dumps(hooks))
    port = free_port()
    command = [program, "-hooks", str(folder / "hooks.json"), "-ip", "127.0.0.1", "-port", str(port)]
    return Proc([], port, cwd=folder, command=command, health="/")


NODE_RED_SETTINGS = """
const crypto = require('crypto');
module.exports = {
    uiHost: '127.0.0.1',
    uiPort: %(port)d,
    flowFile: 'flows.json',
    userDir: %(user_dir)s,
    httpAdminRoot: false,
    disableEditor: true,
    logging: {console: {level: 'error'}},
    functionGlobalContext: {crypto: crypto, secret: %(secret)s},
    // keep the exact body bytes for the HMAC; body-parser then skips requests marked as parsed
    httpNodeMiddleware: function (req, res, next) {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            req.rawBody = Buffer.concat(chunks);
            try { req.body = JSON.parse(req.rawBody.toString('utf8')); } catch (e) { req.body = {}; }
            req._body = true;
            next();
        });
    },
};
"""

NODE_RED_VERIFY = """
const crypto = global.get('crypto');
const given = msg.req.headers['x-hub-signature'] || '';
const expected = 'sha256=' + crypto.createHmac('sha256', global.get('secret')).update(msg.req.rawBody).digest('hex');
if (given.length !== expected.length || !crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected))) {
    msg.statusCode = 401; msg.payload = {status: 'bad signature'}; return [null, msg];
}
msg.event = msg.payload;
msg.uris = Object.keys((msg.payload && msg.payload.events) || {}).join(' ');
return [msg, null];
"""


def node_red_flow(sink_url: str) -> list[dict]:
    """HTTP in -> HMAC function -> switch on the event URI -> HTTP request to the sink -> 202."""
    return [
        {"id": "bench-tab", "type": "tab", "label": "bench"},
        {"id": "bench-in", "type": "http in", "z": "bench-tab", "url": "/webhooks/asgardeo", "method": "post",
         "wires": [["bench-verify"]]},
        {"id": "bench-verify", "type": "function", "z": "bench-tab", "func": NODE_RED_VERIFY, "outputs": 2,
         "wires": [["bench-switch"], ["bench-reply"]]},
        {"id": "bench-switch", "type": "switch", "z": "bench-tab", "property": "uris", "propertyType": "msg",
         "rules": [{"t": "regex", "v": "event-type/loginFailed", "vt": "str", "case": False}, {"t": "else"}],
         "checkall": "false", "outputs": 2, "wires": [["bench-prepare"], ["bench-done"]]},
        {"id": "bench-prepare", "type": "change", "z": "bench-tab", "rules": [
            {"t": "set", "p": "headers", "pt": "msg", "to": "{\"Idempotency-Key\": $string(event.jti) & ':e2e:0'}",
             "tot": "jsonata"},
            {"t": "set", "p": "payload", "pt": "msg", "to": "{\"reason\": \"e2e\"}", "tot": "json"}],
         "wires": [["bench-send"]]},
        {"id": "bench-send", "type": "http request", "z": "bench-tab", "method": "POST", "ret": "txt", "url": sink_url,
         "wires": [["bench-done"]]},
        {"id": "bench-done", "type": "change", "z": "bench-tab", "rules": [
            {"t": "set", "p": "statusCode", "pt": "msg", "to": "202", "tot": "num"},
            {"t": "set", "p": "payload", "pt": "msg", "to": "{\"status\": \"accepted\"}", "tot": "json"}],
         "wires": [["bench-reply"]]},
        {"id": "bench-reply", "type": "http response", "z": "bench-tab", "statusCode": "", "headers": {}, "wires": []},
    ]


def ensure_node_red(folder: Path) -> Path | None:
    """Node-RED installed from npm into `folder`; None (with a message) when npm cannot fetch it."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        print("  Node-RED skipped: node/npm are not installed")
        return None
    print("  installing Node-RED from npm into a temporary folder for the comparison ...")
    result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(folder),
                             "node-red"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, timeout=600)
    red = folder / "node_modules" / "node-red" / "red.js"
    if result.returncode != 0 or not red.exists():
        print(f"  Node-RED skipped: npm could not install it ({result.stderr.strip()[-200:]})")
        return None
    return red


def start_node_red(red: Path, folder: Path, secret: str, sink_url: str) -> Proc:
    """Node-RED replying 202 only after the sink took the call (the reply waits for the HTTP request)."""
    user_dir = Path(tempfile.mkdtemp(prefix="nodered-", dir=folder))
    port = free_port()
    (user_dir / "flows.json").write_text(json.dumps(node_red_flow(sink_url)))
    settings = user_dir / "settings.js"
    settings.write_text(NODE_RED_SETTINGS % {"port": port, "user_dir": json.dumps(str(user_dir)),
                                             "secret": json.dumps(secret)})
    proc = Proc([], port, cwd=user_dir, command=["node", str(red), "--settings", str(settings)], health="/")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the HTTP server answers before the flow is started
        if requests.post(f"http://127.0.0.1:{port}/webhooks/asgardeo", data=b"{}", timeout=5).status_code == 401:
            return proc
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError("Node-RED did not start the benchmark flow")
