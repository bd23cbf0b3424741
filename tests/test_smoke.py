"""The shortest end-to-end path through the library and the CLI."""

from pgq_cli.core.queue import Queue


def test_send_claim_ack_roundtrip(q: Queue) -> None:
    msg_id = q.send('{"job": 1}', priority=9)
    (claimed,) = q.claim()
    assert claimed.msg_id == msg_id
    assert claimed.payload == {"job": 1}
    assert claimed.read_ct == 1
    assert q.ack([msg_id], lease=claimed.lease) == [msg_id]
    assert q.claim() == []


def test_cli_send_then_claim(cli) -> None:  # type: ignore[no-untyped-def]
    sent = cli("send", "-p", "9", '{"job": 1}')
    assert sent.exit_code == 0, sent.stderr
    claimed = cli("claim", "--json")
    assert claimed.exit_code == 0, claimed.stderr
    assert f'"msg_id":{sent.stdout.strip()}' in claimed.stdout
