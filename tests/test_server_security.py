"""The dashboard launches training runs: a page on another origin must not be able to drive it."""
import base64
import http.client
import os
import urllib.parse


def websocket_handshake(url: str, host: str) -> int:
    """HTTP status of a WebSocket upgrade to Streamlit's stream, sent with this Host header."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", "/_stcore/stream", headers={
        "Host": host, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Origin": f"http://{host}"})
    status = conn.getresponse().status
    conn.close()
    return status


def test_a_dns_rebinding_host_is_refused_while_localhost_connects(server):
    url, _ = server
    port = urllib.parse.urlparse(url).port
    assert websocket_handshake(url, f"127.0.0.1:{port}") == 101
    assert websocket_handshake(url, f"localhost:{port}") == 101
    assert websocket_handshake(url, "evil.example") == 403
