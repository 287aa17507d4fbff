"""Render report pages in headless Chromium at a fixed width, screenshot them, and fail when
a page is wider than the window.

    python simulations/check_reports.py runs/x/report.html runs/x/diagnosis.html \\
        readiness/site0/readiness.html --out runs/x/screenshots

For each page: load it in a 1280-pixel-wide window, save a full-page PNG to ``--out``
(``<parent folder>-<page name>.png``), print the page's width
(``document.documentElement.scrollWidth``) and height, and, when the page is too wide, the
outermost elements that reach past the window's edge. The page's ``<details>`` sections are opened
first (``--folded`` leaves them closed), so that what a reader may unfold is checked too.
Exit status 0 when every page fits, 1 when one
does not, 2 when Chromium is missing or fails.

Chromium is driven over its DevTools protocol on a pipe (``--remote-debugging-pipe``), so
the script needs the standard library only; no browser is downloaded. Not part of the
test suite: CI has no Chromium. On Debian: ``apt-get install -y chromium``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)

#: what a page reports about itself: its size and the elements past the window's edge
_MEASURE = """((openDetails) => {
  if (openDetails) document.querySelectorAll('details').forEach(d => { d.open = true; });
  const root = document.documentElement;
  const width = window.innerWidth;
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    const parent = el.parentElement.getBoundingClientRect();
    if (r.right > width + 0.5 && parent.right <= width + 0.5) {  // outermost only
      const name = el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined
        ? '.' + String(el.className).split(' ').join('.') : '');
      wide.push(name + ' (right edge ' + Math.round(r.right) + ' px)');
    }
  }
  return {width: root.scrollWidth, height: root.scrollHeight, wide: wide.slice(0, 8)};
})(%s)"""


class Chromium:
    """A headless Chromium driven over the DevTools protocol on a pipe (fd 3 in, fd 4 out)."""

    def __init__(self, binary: str, profile: Path, timeout: float) -> None:
        self.timeout = timeout
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        shell = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self._log = open(profile / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            ["sh", "-c", shell, *cmd],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        """Wait for an event of ``session`` (one that already came is taken first)."""
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method and event.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(self._read())

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"Chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe (see chromium.log)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        self._log.close()


def check_page(
    browser: Chromium, page: Path, png: Path, width: int, height: int, unfold: bool = True
) -> dict:
    """Load ``page`` at ``width`` x ``height``, open its ``<details>`` (``unfold``), measure
    it and save a full-page screenshot."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    try:
        browser.send("Page.enable", session=session)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        browser.send("Emulation.setDeviceMetricsOverride", metrics, session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session)
        browser.wait_event("Page.loadEventFired", session)
        measured = browser.send(
            "Runtime.evaluate",
            {"expression": _MEASURE % ("true" if unfold else "false"), "returnByValue": True},
            session,
        )["result"]["value"]
        clip = {"x": 0, "y": 0, "width": max(width, measured["width"]), "scale": 1}
        clip["height"] = measured["height"]
        shot = browser.send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            session,
        )
        png.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.send("Target.closeTarget", {"targetId": target})
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="+", type=Path, help="HTML files")
    parser.add_argument("--out", type=Path, default=Path("screenshots"), help="PNG folder")
    parser.add_argument("--width", type=int, default=1280, help="window width (pixels)")
    parser.add_argument("--height", type=int, default=900, help="window height (pixels)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per step")
    parser.add_argument(
        "--folded",
        action="store_true",
        help="leave <details> sections closed (default: open them, so that what a reader "
        "may unfold is measured and shown too)",
    )
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.pages if not p.is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not Path(args.chromium).is_file():
        print(f"Chromium not found at {args.chromium!r} (--chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    too_wide = 0
    with tempfile.TemporaryDirectory(prefix="check-reports-") as profile:
        browser = Chromium(args.chromium, Path(profile), args.timeout)
        try:
            for page in args.pages:
                png = args.out / f"{page.resolve().parent.name}-{page.stem}.png"
                m = check_page(browser, page, png, args.width, args.height, not args.folded)
                fits = m["width"] <= args.width
                too_wide += not fits
                verdict = "fits" if fits else f"TOO WIDE (> {args.width} px)"
                print(f"{page}: {m['width']} x {m['height']} px, {verdict}; screenshot {png}")
                for element in [] if fits else m["wide"]:
                    print(f"    past the edge: {element}")
        except (RuntimeError, TimeoutError) as err:
            browser.close()
            shutil.copy(Path(profile) / "chromium.log", args.out / "chromium.log")
            print(f"Chromium failed: {err} (log: {args.out / 'chromium.log'})", file=sys.stderr)
            return 2
        browser.close()
    return 1 if too_wide else 0


if __name__ == "__main__":
    sys.exit(main())
