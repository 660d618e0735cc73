"""A flood of bad signatures cannot evict a genuine delivery from the quarantine (issue 12, item 13): a full
quarantine gives up the oldest entry of the sender holding the most, evictions are counted, and after the
operator fixes the secret the genuine delivery is still there to re-verify. Behind a proxy the sender is read
from X-Forwarded-For when `server.trusted_proxy` names the proxy."""

from __future__ import annotations

import pytest
import requests

from engine.cli import main
from engine.config.settings import load_config
from engine.errors import ConfigError
from engine.store import open_store
from tests.conftest import basic_config, sample_event, signed
from tests.hostile.support import App

HUB = "203.0.113.7"
ATTACKER = "198.51.100.66"
OLD_SECRET = "the-secret-before-rotation"


def test_300_bad_signatures_do_not_evict_a_delivery_signed_with_an_old_secret(tmp_path, capsys):
    app = App(tmp_path, extra="quarantine: {max_entries: 50}")
    genuine = sample_event()
    body, headers = signed(genuine, secret=OLD_SECRET)
    assert app.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers,
                                    remote_addr=HUB).status_code == 401
    for i in range(300):
        forged, forged_headers = signed(sample_event(), secret=f"guess-{i}")
        assert app.client.simulate_post("/webhooks/asgardeo", body=forged, headers=forged_headers,
                                        remote_addr=ATTACKER).status_code == 401
    kept = app.store.quarantine_list()
    assert len(kept) == 50 and [e.source for e in kept].count(HUB) == 1
    assert app.metric("idhooks_quarantine_evicted_total") == 251
    app.store.close()
    assert main(["quarantine", "list", "--config", str(app.config_path)]) == 0
    assert HUB in capsys.readouterr().out
    config = app.config_path.read_text().replace("secret_file: secret", f'secrets: [new-secret, "{OLD_SECRET}"]')
    app.config_path.write_text(config)
    assert main(["quarantine", "reverify", "--config", str(app.config_path)]) == 0
    assert f"verified, event {genuine['jti']} accepted" in capsys.readouterr().out


@pytest.mark.slow
def test_behind_a_trusted_proxy_the_sender_is_the_forwarded_address(tmp_path, serve):
    config = basic_config(tmp_path)
    config.write_text(config.read_text().replace("max_body_bytes: 1048576}",
                                                 "max_body_bytes: 1048576, trusted_proxy: 127.0.0.1}"))
    server = serve(config)
    body, headers = signed(sample_event(), secret="wrong")
    headers["X-Forwarded-For"] = HUB
    assert requests.post(server.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10).status_code == 401
    server.stop()
    store = open_store(load_config(config).store)
    assert [e.source for e in store.quarantine_list()] == [HUB]
    store.close()


def test_a_trusted_proxy_must_be_an_ip_address(tmp_path):
    config = basic_config(tmp_path)
    config.write_text(config.read_text().replace("max_body_bytes: 1048576}",
                                                 "max_body_bytes: 1048576, trusted_proxy: proxy.local}"))
    with pytest.raises(ConfigError, match=r"server.trusted_proxy: expected the IP address of the reverse proxy"):
        load_config(config)
