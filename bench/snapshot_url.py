#!/usr/bin/env python3
"""Prints a snapshot download URL from a running `atlas-archiver simulate`, the way Atlas hands
one out: OAuth token, POST download, poll the restore job. Standard library only.
Usage: snapshot_url.py BASE_URL PROJECT CLUSTER [SNAPSHOT_INDEX]"""
import base64, json, sys, time, urllib.request

base, project, cluster = sys.argv[1:4]
index = int(sys.argv[4]) if len(sys.argv) > 4 else 0
media = "application/vnd.atlas.2024-11-13+json"
basic = base64.b64encode(b"mdb_sa_id_simulator:mdb_sa_sk_simulator-secret").decode()
req = urllib.request.Request(f"{base}/api/oauth/token", data=b"grant_type=client_credentials",
                             headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
token = json.load(urllib.request.urlopen(req))["access_token"]
def call(method, path, body=None):
    r = urllib.request.Request(f"{base}/api/atlas/v2/groups/{project}/flexClusters/{cluster}/backup/{path}",
                               method=method, data=None if body is None else json.dumps(body).encode(),
                               headers={"Authorization": f"Bearer {token}", "Accept": media, "Content-Type": media})
    return json.load(urllib.request.urlopen(r))
snapshot = call("GET", "snapshots")["results"][index]["id"]
job = call("POST", "download", {"snapshotId": snapshot})
while "snapshotUrl" not in job:
    time.sleep(0.1)
    job = call("GET", f"restoreJobs/{job['id']}")
print(job["snapshotUrl"])
