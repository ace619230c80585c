"""Model-size ladder of a collection (issue 15 item 2): selection rule, config errors, a real store."""

from __future__ import annotations

import json
import math

import pytest

from basicvsr_archival.archival import store as store_mod
from basicvsr_archival.archival.collection import archive_collection
from basicvsr_archival.archival.job_config import ConfigError, load_archival_config
from basicvsr_archival.archival.size_ladder import ladder_profile, plot_ladder, select_size
from basicvsr_archival.archival.size_ladder_settings import SizeLadderError, SizeLadderSettings
from basicvsr_archival.archival.store_report import catalog_lines
from basicvsr_archival.archival.throughput import PROFILE_VERSION, load_profile
from basicvsr_archival.utils.ffmpeg import probe_video

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = "configs/archival/tiny_ci.py"
COLLECTION = "configs/archival/collection_tiny_ci.py"


def _row(size, psnr, tco):
    return {"size": size, "psnr": psnr, "tco_usd": tco}


# ------------------------------------------------------------------------------------------- selection
def test_tolerance_excludes_a_cheap_but_worse_size():
    # best 31.05 dB: eligible >= 30.95 -> c16n2 (31.00) and c32n4; c8n1 (30.00) is cheapest but left out
    rows = [_row("c8n1", 30.0, 1.0), _row("c16n2", 31.0, 2.0), _row("c32n4", 31.05, 3.0)]
    chosen, reason = select_size(rows, 0.1)
    assert chosen == "c16n2"
    assert "below the tolerance: c8n1" in reason and "31.05" in reason


def test_lowest_tco_wins_among_eligible_sizes():
    rows = [_row("c32n4", 31.05, 3.0), _row("c16n2", 31.0, 2.0), _row("c8n1", 30.0, 1.0)]
    assert select_size(rows, 2.0)[0] == "c8n1"  # all within 2 dB: cheapest
    assert select_size(rows, 0.05)[0] == "c16n2"  # 31.0 >= 31.05 - 0.05 (edge included)
    assert select_size(rows, 0.0)[0] == "c32n4"


def test_tco_tie_goes_to_the_smaller_size_and_missing_psnr_is_not_eligible():
    rows = [_row("c16n2", 30.0, 1.5), _row("c8n1", 30.0, 1.5 * (1 + 1e-12))]
    assert select_size(rows, 0.1)[0] == "c8n1"
    rows = [_row("c8n1", None, 0.1), _row("c16n2", 29.0, 5.0)]
    assert select_size(rows, 0.1)[0] == "c16n2"
    with pytest.raises(SizeLadderError, match="no size has a post-SR PSNR"):
        select_size([_row("c8n1", None, 1.0)], 0.1)


# --------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("ladder", "key"),
    [
        ({"sizes": ["c9n9"]}, "model.size_ladder.sizes"),
        ({"sizes": "c8n1"}, "model.size_ladder.sizes"),
        ({"sizes": ["c8n1"], "views_per_month": -1}, "model.size_ladder.views_per_month"),
        ({"sizes": ["c8n1"], "quality_tolerance_db": "x"}, "model.size_ladder.quality_tolerance_db"),
        ({"sizes": ["c8n1"], "prices": "no_such_table"}, "model.size_ladder.prices"),
        ({"sizes": ["c8n1"], "throughput_profile": "/no/such.json"}, "model.size_ladder.throughput_profile"),
        ({"sizes": ["c8n1"], "device": "tpu"}, "model.size_ladder.device"),
        ({"sizes": ["c8n1"], "precision": "int4"}, "model.size_ladder.precision"),
        ({"sizes": ["c8n1"], "horizon_days": 0}, "model.size_ladder.horizon_days"),
        ({"sizes": ["c8n1"], "colour": 1}, "model.size_ladder: unknown key(s) ['colour']"),
        ({"views_per_month": 1.0}, "model.size_ladder.sizes is required"),
        ({"sizes": ["c8n1", "c64n7"]}, "model.size_ladder.sizes: c64n7 needs base_checkpoint"),
    ],
)
def test_config_errors_name_the_key(repo_root, ladder, key):
    with pytest.raises(ConfigError) as err:
        load_archival_config(repo_root / TINY, {"model.size_ladder": ladder, "finetune.eval_frames": 4})
    msg = str(err.value)
    assert key in msg and "\n" not in msg


def test_ladder_needs_evaluation_frames(repo_root):
    with pytest.raises(ConfigError, match=r"model.size_ladder .*finetune.eval_frames > 0"):
        load_archival_config(repo_root / TINY, {"model.size_ladder": {"sizes": ["c8n1"]}})


def test_absent_or_empty_ladder_changes_nothing(repo_root):
    plain = load_archival_config(repo_root / TINY)
    empty = load_archival_config(repo_root / TINY, {"model.size_ladder": {}})
    ladder = {"model.size_ladder": {"sizes": ["c16n2", "c8n1"]}, "finetune.eval_frames": 4}
    on = load_archival_config(repo_root / TINY, ladder)  # eval_frames is not in the fingerprint
    assert plain.size_ladder is None and empty.size_ladder is None
    assert plain.fingerprint() == empty.fingerprint() == on.fingerprint()
    assert plain.to_dict() == empty.to_dict() and "size_ladder" not in plain.to_dict()
    assert "size_ladder" not in on.model  # popped: build_restorer never sees it
    assert on.size_ladder.sizes == ("c8n1", "c16n2")  # smallest first
    assert on.to_dict()["size_ladder"]["horizon_days"] == 365.0


def test_measured_profile_is_cached_in_the_work_dir(tmp_path):
    ladder = SizeLadderSettings(sizes=("c8n1",))
    profile = ladder_profile(ladder, tmp_path, [(32, 18)], 2)
    path = tmp_path / "throughput.json"
    (entry,) = load_profile(path).entries
    assert (entry.model, entry.lr_width, entry.lr_height, entry.scale) == ("c8n1", 32, 18, 2)
    assert entry.fps > 0
    stamp = path.stat().st_mtime_ns
    again = ladder_profile(ladder, tmp_path, [(32, 18)], 2)  # nothing missing: not measured again
    assert path.stat().st_mtime_ns == stamp and again.entries == profile.entries


# ------------------------------------------------------------------------------------------ end to end
def _profile(path, lr_w, lr_h):
    """A hand-made profile: c16n2 restores 100x faster than c8n1 (so frequent retrievals favour it)."""
    entries = []
    for name, (mid, blocks), seconds in (("c8n1", (8, 1), 20.0), ("c16n2", (16, 2), 0.2)):
        entries.append({
            "model": name, "mid_channels": mid, "num_blocks": blocks, "scale": 2, "device": "cpu",
            "device_name": "test", "precision": "fp32", "lr_width": lr_w, "lr_height": lr_h, "frames": 8,
            "seconds": seconds,
        })  # fmt: skip
    path.write_text(json.dumps({"version": PROFILE_VERSION, "machine": {}, "entries": entries}))
    return path


def test_collection_with_a_size_ladder_keeps_the_cheapest_good_size(collection_segments, repo_root, tmp_path):
    segs = [s for s in collection_segments if s.source == collection_segments[0].source][:2]
    lr = probe_video(segs[0].lr)
    tolerance = 50.0  # every size eligible: the TCO decides (c16n2, restored 100x faster, 1000 views/month)
    options = {
        "cluster.method": "single", "cluster.max_videos_per_cluster": None, "cluster.iters_per_video": 5,
        "cluster.max_iters": 10, "finetune.eval_frames": 4,
        "model.size_ladder": dict(
            sizes=["c8n1", "c16n2"], views_per_month=1000.0, quality_tolerance_db=tolerance,
            throughput_profile=str(_profile(tmp_path / "profile.json", lr.width, lr.height)),
        ),
    }  # fmt: skip
    store = tmp_path / "store"
    result = archive_collection(repo_root / COLLECTION, [s.path for s in segs], store, cfg_options=options,
                                progress=False)  # fmt: skip
    assert result.ok, result.failed
    assert sorted(r for r in result.ran if r.startswith("finetune:")) == [
        "finetune:c000/c16n2",
        "finetune:c000/c8n1",
    ]
    with store_mod.Store.open(store, lock=False) as st:
        cat = store_mod.catalog_json(st)
        (cluster,) = cat["clusters"]
        lad = cluster["settings"]["size_ladder"]
        rows = {r["size"]: r for r in lad["rows"]}
        assert set(rows) == {"c8n1", "c16n2"}
        for r in rows.values():
            assert math.isfinite(r["psnr"]) and math.isfinite(r["tco_usd"]) and r["tco_usd"] > 0
            assert r["fps"] == {
                f"{lr.width}x{lr.height}": pytest.approx(8 / (20.0 if r["size"] == "c8n1" else 0.2))
            }
            assert r["model_bytes"] > 0 and r["finetune_seconds"] > 0
        best = max(r["psnr"] for r in rows.values())
        eligible = [r for r in rows.values() if r["psnr"] >= best - tolerance]
        assert lad["chosen"] == min(eligible, key=lambda r: r["tco_usd"])["size"] == "c16n2"
        assert rows["c16n2"]["tco_usd"] < rows["c8n1"]["tco_usd"]
        assert st.object_path(cluster["model"]).stat().st_size == rows["c16n2"]["model_bytes"]
        kinds = [o["kind"] for o in st.object_rows()]
        assert kinds.count("model") == 1  # only the chosen model is stored
        video = st.videos()[0]
        manifest = st.read_manifest(video["manifest_sha"])
        gen = manifest["model"]["config"]["generator"]
        assert (gen["mid_channels"], gen["num_blocks"]) == (16, 2)
        assert manifest["model"]["base_checkpoint"] is None  # a size other than the config's: from scratch
        out = tmp_path / "restored.mkv"
        store_mod.restore_video(st, video["id"], out, progress=False)
    src, got = probe_video(video["source"]), probe_video(out)
    assert got.num_frames == src.num_frames and (got.width, got.height) == (src.width, src.height)
    assert store_mod.verify(store).ok
    assert any("size ladder: c16n2 chosen" in line for line in catalog_lines(cat, store))
    png = plot_ladder(cat["clusters"], tmp_path / "ladder.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = archive_collection(repo_root / COLLECTION, [s.path for s in segs], store, cfg_options=options,
                               resume=True, progress=False)  # fmt: skip
    assert again.ok and again.ran == []  # nothing re-trained (nor re-prepared or re-packaged)
