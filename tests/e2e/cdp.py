"""A small driver for headless Chromium over the DevTools protocol, through
--remote-debugging-pipe (fds 3 and 4): no port to open, and it works inside
a network namespace (`ip netns exec`), which a TCP debugging port would not
reach from the test.  Debian's chromium; see docs/CONSOLE.md."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time


class CdpError(Exception):
    pass


class Browser:
    def __init__(self, argv_prefix=(), spki=None):
        self.profile = tempfile.mkdtemp(prefix="vmove-chromium-")
        # Our ends: we write commands to to_c (its fd 3), read from from_c (its fd 4).
        c_in, self._w = os.pipe()
        self._r, c_out = os.pipe()
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-dev-shm-usage", "--remote-debugging-pipe",
                 f"--user-data-dir={self.profile}", "--window-size=1100,900"]
        if spki:
            # Trust exactly the host's key (the test CA is not in Chromium's store).
            flags.append(f"--ignore-certificate-errors-spki-list={spki}")

        def fds():
            os.dup2(c_in, 3)
            os.dup2(c_out, 4)
        self.proc = subprocess.Popen(list(argv_prefix) + ["chromium"] + flags + ["about:blank"],
                                     preexec_fn=fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(c_in)
        os.close(c_out)
        self._buf = b""
        self._id = 0
        self.events = []
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")

    def _read_msg(self, timeout):
        deadline = time.time() + timeout
        while b"\0" not in self._buf:
            import select
            left = deadline - time.time()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise CdpError("no answer from Chromium in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise CdpError("Chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=None, timeout=30, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read_msg(timeout)
            if m.get("id") == self._id:
                if "error" in m:
                    raise CdpError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def page(self, method, **params):
        return self.call(method, session=self.session, **params)

    def eval(self, expr):
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        r = self.page("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise CdpError(f"{expr}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")

    def goto(self, url):
        self.page("Page.navigate", url=url)

    def wait(self, expr, timeout=30, what=None):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.eval(expr)
                if last:
                    return last
            except CdpError as e:
                last = str(e)
            time.sleep(0.1)
        raise CdpError(f"timed out waiting for {what or expr} (last: {last})")

    def screenshot(self, path):
        data = self.page("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
