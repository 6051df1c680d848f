"""A real S3 server for the offsite tests: a single-node Ceph cluster
(ceph-mon, one ceph-osd on memstore, radosgw) started without systemd in a
temporary folder, on 127.0.0.1 and ports picked free, with one S3 user made
by radosgw-admin. Every daemon writes its stdout and stderr to a log file
(a pipe left open would hang `$(...)` around the suite), and only the PIDs
started here are ever signalled, a zombie counting as stopped.

Also a small independent S3 client (SigV4 over the standard library) with
which the tests look at, damage and delete objects behind bri-backup's back:
the tests never check the C client with itself.

Not a mock: if ceph is not installed, starting fails and the test errors
(scripts/install-deps installs ceph-mon ceph-osd radosgw ceph-common).
"""

import datetime
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ACCESS_KEY = "BRITESTACCESSKEY0001"
# Distinctive, so a test can grep for it anywhere it must never appear.
SECRET_KEY = "brisecret-Zq8vT3nW6yP1kR4mX7cB0dF2gH5jL9sA"
REGION = "us-east-1"
START_LIMIT = 60  # seconds for the cluster to serve S3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid):
    """Whether pid runs (a zombie, or a pid that is gone, is stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class RGW:
    """A running single-node Ceph RGW under folder."""

    def __init__(self, folder, memstore_bytes=1 << 30):
        self.dir = Path(folder)
        self.memstore_bytes = memstore_bytes  # RAM the OSD keeps objects in (RGW: 507 when full)
        self.procs = {}  # name -> Popen, only what we started
        self.mon_port = free_port()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # For virtual-host addressing: BUCKET.localhost (curl resolves *.localhost
        # to the loopback itself) and rgw dns name = localhost.
        self.vhost_endpoint = f"http://localhost:{self.port}"
        self.conf = self.dir / "ceph.conf"
        self.logs = self.dir / "log"

    # ---- the cluster ----

    def _write_conf(self, fsid):
        d = self.dir
        self.conf.write_text(f"""[global]
fsid = {fsid}
mon host = [v1:127.0.0.1:{self.mon_port}]
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr2 = false
ms bind ipv6 = false
public addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
paxos propose interval = 0.1
osd objectstore = memstore
memstore device bytes = {self.memstore_bytes}
osd max object name len = 256
osd max object namespace len = 64
run dir = {d}/run
pid file =
log file = {d}/log/$name.log
mon cluster log file = {d}/log/cluster.log
crash dir = {d}/crash
mon data = {d}/mon/$id
osd data = {d}/osd/$id
admin socket = {d}/run/$name.$pid.asok
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{self.port}
rgw data = {d}/rgw
rgw dns name = localhost
""")

    def _run(self, *cmd, timeout=60):
        with open(self.logs / "commands.log", "a") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            p = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=log, text=True, timeout=timeout)
            log.write(p.stdout)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}; see {self.logs}")
        return p.stdout

    def _run_retry(self, *cmd, attempts=5):
        """_run, again after a short pause when it fails (a client's first
        command can race the monitor map; the commands given are idempotent)."""
        for attempt in range(attempts):
            try:
                return self._run(*cmd)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2)

    def _spawn(self, name, *cmd):
        out = open(self.logs / f"{name}.out", "ab")
        try:
            self.procs[name] = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        finally:
            out.close()

    def start(self):
        for prog in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"):
            if not shutil.which(prog):
                raise RuntimeError(f"{prog} is not installed: run scripts/install-deps "
                                   "(ceph-mon ceph-osd radosgw ceph-common)")
        for sub in ("mon", "osd/0", "run", "log", "rgw", "crash"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        self._write_conf(fsid)
        c = str(self.conf)
        self._run("monmaptool", "--create", "--addv", "a", f"[v1:127.0.0.1:{self.mon_port}]",
                  "--fsid", fsid, str(self.dir / "monmap"))
        self._run("ceph-mon", "-c", c, "--mkfs", "-i", "a", "--monmap", str(self.dir / "monmap"))
        self._spawn("mon", "ceph-mon", "-c", c, "-i", "a", "-f")
        osd_uuid = str(uuid.uuid4())
        # The same race as the OSD's (below): a client's first command can reach
        # a fresh monitor before the client has the monitor map ("EPERM: problem
        # getting command descriptions"). With the uuid, osd create is idempotent.
        self._run_retry("ceph", "-c", c, "--connect-timeout", "30", "osd", "create", osd_uuid)
        self._run("ceph-osd", "-c", c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._spawn("osd", "ceph-osd", "-c", c, "-i", "0", "-f")
        self.start_rgw()
        self._run_retry("radosgw-admin", "-c", c, "user", "create", "--uid=bri-test",
                  "--display-name=bri test", f"--access-key={ACCESS_KEY}",
                  f"--secret={SECRET_KEY}")
        return self

    def start_rgw(self):
        """Starts radosgw (again, after stop_rgw) and waits until it answers."""
        self._spawn("rgw", "radosgw", "-c", str(self.conf), "-n", "client.rgw", "-f")
        deadline = time.monotonic() + START_LIMIT
        osd_restarts = 0
        while time.monotonic() < deadline:
            for name, p in list(self.procs.items()):
                if p.poll() is None:
                    continue
                # Ceph 16.2's OSD can send its first command to the monitor before
                # it has the monitor map, on a loaded machine: the monitor answers
                # "wrong fsid" and the OSD exits. Starting it again works.
                if name == "osd" and osd_restarts < 3:
                    osd_restarts += 1
                    self.procs.pop("osd")
                    self._spawn("osd", "ceph-osd", "-c", str(self.conf), "-i", "0", "-f")
                    continue
                raise RuntimeError(f"{name} exited {p.returncode} while starting; "
                                   f"see {self.logs}")
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"radosgw did not answer within {START_LIMIT} s; see {self.logs}")

    def _stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return
        if p.poll() is None and _alive(p.pid):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop_rgw(self):
        self._stop("rgw")

    def stop(self):
        for name in ("rgw", "osd", "mon"):
            self._stop(name)

    # ---- for the programs under test ----

    def env(self, base=None, **extra):
        """An environment with the S3 user's credentials and the endpoint,
        as the aws CLI reads them."""
        e = dict(os.environ if base is None else base)
        for k in list(e):
            if k.startswith("AWS_"):
                del e[k]
        e.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                 AWS_REGION=REGION, AWS_ENDPOINT_URL=self.endpoint)
        e.update(extra)
        return e

    def client(self):
        return S3(self.endpoint, ACCESS_KEY, SECRET_KEY, REGION)


class S3Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


class S3:
    """A minimal path-style S3 client (SigV4), independent of the C one."""

    def __init__(self, endpoint, access, secret, region):
        self.endpoint, self.access, self.secret, self.region = endpoint, access, secret, region
        self.host = urllib.parse.urlsplit(endpoint).netloc

    def request(self, method, bucket, key="", query=None, body=b"", headers=None):
        query = dict(query or {})
        path = "/" + bucket + ("/" + urllib.parse.quote(key, safe="/~") if key else "")
        qs = "&".join(f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(str(v), safe='~')}"
                      for k, v in sorted(query.items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        h = {"host": self.host, "x-amz-date": amz_date, "x-amz-content-sha256": payload}
        h.update({k.lower(): v for k, v in (headers or {}).items()})
        names = sorted(h)
        canonical = "\n".join([method, path, qs,
                               "".join(f"{n}:{str(h[n]).strip()}\n" for n in names),
                               ";".join(names), payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
                              f"SignedHeaders={';'.join(names)}, Signature={sig}")
        del h["host"]
        req = urllib.request.Request(self.endpoint + path + ("?" + qs if qs else ""),
                                     data=body if method in ("PUT", "POST") else None,
                                     method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return S3Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return S3Response(e.code, dict(e.headers), e.read())

    def keys(self, bucket, prefix=""):
        """Every key under prefix (ListObjectsV2, following continuation tokens)."""
        import xml.etree.ElementTree as ET
        out, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            r = self.request("GET", bucket, query=q)
            assert r.status == 200, r.body
            root = ET.fromstring(r.body)
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            out += [c.findtext(f"{ns}Key") for c in root.findall(f"{ns}Contents")]
            if root.findtext(f"{ns}IsTruncated") != "true":
                return out
            token = root.findtext(f"{ns}NextContinuationToken")

    def versions(self, bucket, prefix=""):
        """[(key, version id, is delete marker)] under prefix."""
        import xml.etree.ElementTree as ET
        r = self.request("GET", bucket, query={"versions": "", "prefix": prefix})
        assert r.status == 200, r.body
        root = ET.fromstring(r.body)
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        out = [(v.findtext(f"{ns}Key"), v.findtext(f"{ns}VersionId"), False)
               for v in root.findall(f"{ns}Version")]
        out += [(v.findtext(f"{ns}Key"), v.findtext(f"{ns}VersionId"), True)
                for v in root.findall(f"{ns}DeleteMarker")]
        return out
