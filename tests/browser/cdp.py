#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol on a pipe
(--remote-debugging-pipe: commands on fd 3, answers on fd 4, each a JSON
message ended by a NUL byte), for tests/browser/test_console.sh.

  cdp.py CHROMIUM WORKDIR STEPS.json

STEPS is a list of steps, run in order on one page (1400 x 1300 CSS px):
  {"open": URL}                         navigate and wait for the load event
                                        (none when only the fragment changes)
  {"wait": JS, "timeout": S}            evaluate JS until it is true (real time)
  {"eval": JS, "out": FILE}             write JS's value (JSON) to FILE
  {"screenshot": FILE}                  write a PNG of the whole page
Exits 1 with the reason when a step fails or times out; the whole run is
bounded by each step's timeout (default 30 s)."""
import base64
import fcntl
import json
import os
import select
import subprocess
import sys
import time


class Browser:
    def __init__(self, chromium, workdir):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # Chromium reads fd 3 and writes fd 4: put its pipe ends there in the
        # child, from copies above 4 (so neither dup2 overwrites the other's
        # source, and neither is a no-op that would keep close-on-exec).
        hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        to_chrome_r, from_chrome_w = hi_r, hi_w
        def fds():
            os.dup2(to_chrome_r, 3)  # inheritable
            os.dup2(from_chrome_w, 4)
        args = [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--remote-debugging-pipe',
                '--user-data-dir=' + os.path.join(workdir, 'profile'), '--no-first-run', '--no-default-browser-check',
                '--hide-scrollbars', '--mute-audio', '--disable-extensions', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', 'about:blank']
        self.log = open(os.path.join(workdir, 'chromium.log'), 'wb')
        # os.pipe's descriptors close on exec; only the dup2 copies (3, 4) reach Chromium
        self.proc = subprocess.Popen(args, preexec_fn=fds, close_fds=False, stdout=self.log, stderr=self.log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b''
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b'\0' not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError('chromium did not answer in time')
            r, _, _ = select.select([self.from_chrome], [], [], 0.5)
            if r:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError('chromium closed its pipe (see chromium.log)')
                self.buf += chunk
        msg, self.buf = self.buf.split(b'\0', 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        m = {'id': mid, 'method': method, 'params': params or {}}
        if session:
            m['sessionId'] = session
        os.write(self.to_chrome, json.dumps(m).encode() + b'\0')
        deadline = time.monotonic() + timeout
        while True:
            r = self._read_message(deadline)
            if r.get('id') == mid:
                if 'error' in r:
                    raise RuntimeError('%s: %s' % (method, r['error']))
                return r.get('result', {})
            self.events.append(r)

    def wait_event(self, method, session, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get('method') == method and e.get('sessionId') == session:
                    del self.events[i]
                    return e
            self.events.append(self._read_message(deadline))

    def close(self):
        try:
            self.call('Browser.close', timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def evaluate(b, s, js):
    r = b.call('Runtime.evaluate', {'expression': js, 'returnByValue': True, 'awaitPromise': True}, s)
    if 'exceptionDetails' in r:
        raise RuntimeError('page script failed: %s' % json.dumps(r['exceptionDetails'])[:500])
    return r['result'].get('value')


def main():
    chromium, workdir, steps_file = sys.argv[1:4]
    steps = json.load(open(steps_file))
    b = Browser(chromium, workdir)
    try:
        target = b.call('Target.createTarget', {'url': 'about:blank'})['targetId']
        s = b.call('Target.attachToTarget', {'targetId': target, 'flatten': True})['sessionId']
        b.call('Page.enable', session=s)
        b.call('Runtime.enable', session=s)
        b.call('Emulation.setDeviceMetricsOverride',
               {'width': 1400, 'height': 1300, 'deviceScaleFactor': 1, 'mobile': False}, s)
        for st in steps:
            timeout = st.get('timeout', 30)
            if 'open' in st:
                nav = b.call('Page.navigate', {'url': st['open']}, s)
                if nav.get('errorText'):
                    raise RuntimeError('open %s: %s' % (st['open'], nav['errorText']))
                if nav.get('loaderId'):  # none: a change of the fragment only, no load
                    b.wait_event('Page.loadEventFired', s, timeout)
            elif 'wait' in st:
                deadline = time.monotonic() + timeout
                while not evaluate(b, s, st['wait']):
                    if time.monotonic() > deadline:
                        raise TimeoutError('waited %d s for: %s' % (timeout, st['wait']))
                    time.sleep(0.25)
            elif 'eval' in st:
                with open(st['out'], 'w') as f:
                    json.dump(evaluate(b, s, st['eval']), f)
            elif 'screenshot' in st:
                png = b.call('Page.captureScreenshot', {'format': 'png', 'captureBeyondViewport': False}, s, timeout)
                with open(st['screenshot'], 'wb') as f:
                    f.write(base64.b64decode(png['data']))
    except Exception as e:  # the reason, for the test's log
        print('cdp.py: %s' % e, file=sys.stderr)
        b.close()
        sys.exit(1)
    b.close()


if __name__ == '__main__':
    main()
