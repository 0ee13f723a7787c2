"""Start `llama-wgpu serve` on a free loopback port for the scripts beside
this one (load-test.py, chat-turns.py). Standard library only."""
import http.client
import subprocess
import sys
import threading
import time


def start(binary, args):
    """`binary serve --port 0 ARGS...`: (process, host, port) once /health answers 200."""
    srv = subprocess.Popen([binary, "serve", "--port", "0", *args], stderr=subprocess.PIPE, text=True)
    addr = None
    for line in srv.stderr:
        if line.startswith("listening on http://"):
            addr = line.strip().removeprefix("listening on http://")
            break
    if addr is None:
        srv.kill()
        sys.exit("the server did not start")
    # Keep reading stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
    host, port = addr.rsplit(":", 1)
    while True:
        if srv.poll() is not None:
            sys.exit(f"the server exited with status {srv.returncode} while loading")
        try:
            c = http.client.HTTPConnection(host, port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return srv, host, port
        except OSError:
            pass
        time.sleep(0.2)
