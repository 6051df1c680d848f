"""Offsite copies in S3-compatible object storage (SPEC.md section 6),
against a real Ceph RGW (tests/integration/rgw.py)."""


def test_rgw_fixture_serves_s3(rgw, bucket):
    s3 = rgw.client()
    assert s3.request("PUT", bucket).status == 200
    assert s3.request("PUT", bucket, "a/b.txt", body=b"hello").status == 200
    assert s3.keys(bucket) == ["a/b.txt"]
    assert s3.request("GET", bucket, "a/b.txt").body == b"hello"
