"""Seeded train/validation split of `towersmoke` by camera scene, written to models/tower_split.json.

The tower validation (issue 15) chooses thresholds and recipes, so it has to be fixed, reproducible and free
of leaks. Rules, in order:

1. A group (`split_hint` = `group:<camera scene>`, one camera, often several days) is never split.
2. Forced to train: `group:hpwren_20160604_rm-n`, the same fire as the rm-n frames on firesmoke's training
   side (and the rm-n sequence is used for tuning the confirmation rule); `group:aifm_croatia_cjp`, one
   88-frame group (12 % of the pool) of a non-HPWREN camera that includes aerial photos: in validation it
   would be more than half of it and say little about tower cameras, while training gains its variety.
3. Forced to validation: the groups whose frames are all smoke-free (fog, sunrise, a city valley), so that
   there are whole tower frames without smoke among the image-level negatives.
4. The other groups are stratified: HPWREN scenes of >= 20 frames, HPWREN scenes of < 20 frames (mostly
   SMOKE5K Labelbox scenes), and ALERTWildfire. In each stratum the groups are put in an order drawn from the
   seed (SHA-1 of seed and group name) and taken in that order while the stratum's validation holds fewer
   than round(VAL_FRAC x groups) groups; a group is skipped if it would take the stratum's validation frames
   past VAL_FRAC x frames x FRAME_SLACK, so one large scene cannot swallow the validation side.

Usage: python models/tower_split.py [--data DIR] [--seed 0] [--out models/tower_split.json]
DIR defaults to $WILDFIRE_DATASETS, else ../shared/datasets relative to the repository. Prints the counts.
"""
import argparse
import collections
import csv
import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VAL_FRAC = 0.2
FRAME_SLACK = 1.3
LARGE = 20  # frames: a "large" scene
FORCED_TRAIN = ("group:hpwren_20160604_rm-n", "group:aifm_croatia_cjp")


def default_data_root():
    return os.environ.get("WILDFIRE_DATASETS") or os.path.join(HERE, "..", "..", "shared", "datasets")


def origin(row):
    """Where a frame comes from, for the counts (see towersmoke/SOURCES.md)."""
    src = row["source"]
    name = src.rsplit("/", 1)[-1]
    if src.startswith("wijayarobert/"):
        if re.match(r"\d+_[+-]\d+\.jpg$", name):
            return "SMOKE5K FIgLib"
        if name.startswith("image_"):
            return "Croatian"
        if name.startswith("Frame"):
            return "SMOKE5K Frame"
        return "SMOKE5K Labelbox"
    if src.startswith("eyalofekDB/"):
        return "Croatian" if "/cjp" in src else "eyalofekDB HPWREN"
    if src.startswith("SayBender/"):
        return "ALERTWildfire (Nemo)"
    return "negatives (" + src.split("/")[0] + ")"


def read_groups(root):
    """group -> list of label rows, in file order."""
    groups = collections.defaultdict(list)
    with open(os.path.join(root, "labels.csv")) as f:
        for row in csv.DictReader(f):
            hint = row["split_hint"]
            if not hint.startswith("group:"):
                sys.exit(f"{row['file']}: split_hint {hint!r} is not group:<scene>; towersmoke groups every row")
            groups[hint].append(row)
    return groups


def stratum(group, rows):
    if all(r["smoke"] == "0" for r in rows):
        return "negatives only"
    if group.startswith("group:alertwf_"):
        return "ALERTWildfire"
    return "HPWREN large" if len(rows) >= LARGE else "HPWREN small"


def _order(group, seed):
    return hashlib.sha1(f"{seed}:{group}".encode()).hexdigest()


def assign(groups, seed):
    """group -> "train" / "val"."""
    split = {}
    strata = collections.defaultdict(list)
    for g, rows in groups.items():
        if g in FORCED_TRAIN:
            split[g] = "train"
        elif stratum(g, rows) == "negatives only":
            split[g] = "val"
        else:
            strata[stratum(g, rows)].append(g)
    for members in strata.values():
        want = round(VAL_FRAC * len(members))
        cap = VAL_FRAC * sum(len(groups[g]) for g in members) * FRAME_SLACK
        taken, frames = 0, 0
        for g in sorted(members, key=lambda g: _order(g, seed)):
            n = len(groups[g])
            if taken < want and frames + n <= cap:
                split[g] = "val"
                taken, frames = taken + 1, frames + n
            else:
                split[g] = "train"
    return split


def counts(groups, split, root):
    out = {}
    for side in ("train", "val"):
        rows = [r for g, rs in groups.items() if split[g] == side for r in rs]
        masks = sum(os.path.exists(os.path.join(root, "masks", os.path.splitext(os.path.basename(r["file"]))[0]
                                                + ".png")) for r in rows)
        out[side] = dict(groups=sum(1 for g in groups if split[g] == side), frames=len(rows),
                         smoke=sum(r["smoke"] == "1" for r in rows), no_smoke=sum(r["smoke"] == "0" for r in rows),
                         smoke_unknown=sum(r["smoke"] == "-1" for r in rows), with_mask=masks,
                         by_origin=dict(sorted(collections.Counter(origin(r) for r in rows).items())))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=default_data_root(), help="folder holding towersmoke/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(HERE, "tower_split.json"))
    args = ap.parse_args()
    root = os.path.join(args.data, "towersmoke")
    if not os.path.exists(os.path.join(root, "labels.csv")):
        sys.exit(f"no {root}/labels.csv: pass --data with the folder that holds towersmoke/ "
                 "(or set WILDFIRE_DATASETS)")
    groups = read_groups(root)
    split = assign(groups, args.seed)
    doc = dict(
        about="towersmoke split by camera scene (group), made by models/tower_split.py; see models/README.md, "
              "Tower validation",
        seed=args.seed, val_frac=VAL_FRAC, frame_slack=FRAME_SLACK, forced_train=list(FORCED_TRAIN),
        counts=counts(groups, split, root),
        groups={g: split[g] for g in sorted(groups)},
        val_groups={g: dict(frames=len(groups[g]), stratum=stratum(g, groups[g]))
                    for g in sorted(groups) if split[g] == "val"},
    )
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for side, c in doc["counts"].items():
        print(f"{side}: {c['groups']} groups, {c['frames']} frames (smoke {c['smoke']}, no smoke {c['no_smoke']}, "
              f"unknown {c['smoke_unknown']}, with mask {c['with_mask']})")
        print("   ", ", ".join(f"{k} {v}" for k, v in c["by_origin"].items()))
    for g, v in doc["val_groups"].items():
        print(f"  val {g[6:]}: {v['frames']} frames ({v['stratum']})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
