"""Price table ``aws_s3``: AWS S3 storage classes (us-east-1, first 50 TB) and EC2 compute.

Per tier: USD per GB-month, USD per GB retrieved (standard retrieval for the Glacier classes that
need a restore), minimum storage days, minimum billable object size, per-object overhead (bytes at
the tier's price and at Standard's), USD per 1,000 PUT / GET / restore requests, whether a retrieval
restores a temporary copy first (billed at Standard for ``restore_copy_days`` of the scenario) and
the hours to the first byte. Sizes: AWS bills GB = 2**30 bytes and KB = 1024 bytes (the AWS pricing
calculator's conversion, quoted in [overhead]), so ``gb="binary"``.

The search tool's stored copies of public pages are the sources (the live pages were not reachable);
each value's comment names the page and its date ("retrieved 2026-12" where the page is undated):

[usage]    https://www.usage.ai/blogs/aws/storage-cost/glacier-deep-archive-pricing/ (updated
           2026-06-05; "US East, May 2026"): storage, retrieval, minimum duration and size per class
[negot]    https://awsnegotiations.com/glacier-vs-glacier-deep-archive.html ("US East, May 2026 list"):
           Glacier Flexible Retrieval / Deep Archive storage, retrieval, minimums, transition requests
[c3x]      https://c3x.dev/blog/s3-request-fees-explained (retrieved 2026-12): PUT / GET per 1,000
[arq]      https://www.arqbackup.com/aws-glacier-pricing.html (retrieved 2026-12): Glacier PUT per 1,000
[gist]     https://gist.github.com/casouri/56e1e634e50d1ae023f3bb8ea4d053de (2023-03-24): Deep Archive
           PUT and standard-retrieval requests per 1,000, 8 KB + 32 KB per object
[repost]   https://repost.aws/knowledge-center/s3-manage-data-retrieval (AWS, retrieved 2026-12):
           Glacier Flexible Retrieval standard retrieval $0.05 per 1,000 requests + $0.01 per GB
[overhead] https://serveraide.com/explain-aws-s3-glacier-storage-class-charges-141957 (retrieved
           2026-12; quotes the AWS pricing calculator): 32 KB per object at the Glacier class's price
           plus 8 KB at S3 Standard's; also https://www.demo.wlid.nl/s3-storage-classes.html (2021-12-02)
[restore]  https://repost.aws/knowledge-center/restore-s3-object-glacier-storage-class (AWS, retrieved
           2026-12): a restore creates a temporary copy in S3 Standard for the days requested
[latency]  https://docs.aws.amazon.com/AmazonS3/latest/userguide/restoring-objects-retrieval-options.html
           (retrieved 2026-12): standard retrievals 3-5 h (Flexible Retrieval), within 12 h (Deep Archive)
[minimums] https://docs.amazonaws.cn/en_us/AmazonS3/latest/userguide/glacier-storage-classes.html
           (retrieved 2026-12): Glacier minimum durations (90 / 90 / 180 days), charged in full if
           deleted, overwritten or transitioned earlier; https://repost.aws/questions/QUSzrZWXNoRmG2CMCw_M7BKA
           (retrieved 2026-12): Glacier Instant Retrieval bills at least 128 KB per object
[ec2]      https://www.factualminds.com/blog/amazon-ec2-on-demand-pricing-instance-families-2026/
           (2026-06-17): on-demand Linux, us-east-1: g5.xlarge $1.006/h, m7g.large $0.0816/h
"""

KB = 1024

cost = dict(
    tiers={
        "Standard": dict(
            storage_usd_per_gb_month=0.023,  # [usage] 2026-06-05
            retrieval_usd_per_gb=0.0,  # [usage] 2026-06-05: none
            put_usd_per_1000=0.005,  # [c3x] retrieved 2026-12
            get_usd_per_1000=0.0004,  # [c3x] retrieved 2026-12
            restore_hours=0.0,  # [usage] 2026-06-05: milliseconds
        ),
        "Standard-IA": dict(
            storage_usd_per_gb_month=0.0125,  # [usage] 2026-06-05
            retrieval_usd_per_gb=0.01,  # [usage] 2026-06-05
            min_storage_days=30,  # [usage] 2026-06-05
            min_object_bytes=128 * KB,  # [usage] 2026-06-05
            put_usd_per_1000=0.01,  # [c3x] retrieved 2026-12
            get_usd_per_1000=0.001,  # [c3x] retrieved 2026-12
            restore_hours=0.0,  # [usage] 2026-06-05: milliseconds
        ),
        "Glacier Instant Retrieval": dict(
            storage_usd_per_gb_month=0.004,  # [usage] 2026-06-05
            retrieval_usd_per_gb=0.03,  # [usage] 2026-06-05
            min_storage_days=90,  # [usage] 2026-06-05; [minimums]
            min_object_bytes=128 * KB,  # [usage] 2026-06-05; [minimums]
            put_usd_per_1000=0.02,  # [c3x] retrieved 2026-12
            get_usd_per_1000=0.01,  # [c3x] retrieved 2026-12
            restore_hours=0.0,  # [usage] 2026-06-05: milliseconds
        ),
        "Glacier Flexible Retrieval": dict(
            storage_usd_per_gb_month=0.0036,  # [usage] 2026-06-05; [negot] May 2026
            retrieval_usd_per_gb=0.01,  # standard retrieval: [usage] 2026-06-05; [repost]
            min_storage_days=90,  # [usage] 2026-06-05; [negot] May 2026; [minimums]
            overhead_bytes=32 * KB,  # [overhead]; [gist] 2023-03-24
            overhead_standard_bytes=8 * KB,  # [overhead]; [gist] 2023-03-24
            put_usd_per_1000=0.03,  # [arq], [c3x] retrieved 2026-12; transition: [negot] May 2026
            get_usd_per_1000=0.0004,  # GET of the restored copy: [c3x] retrieved 2026-12
            restore_usd_per_1000=0.05,  # standard retrieval requests: [repost] retrieved 2026-12
            needs_restore=True,  # [restore]
            restore_hours=5.0,  # standard retrieval 3-5 h: [latency]
        ),
        "Glacier Deep Archive": dict(
            storage_usd_per_gb_month=0.00099,  # [usage] 2026-06-05; [negot] May 2026
            retrieval_usd_per_gb=0.02,  # standard retrieval: [usage] 2026-06-05; [negot]; [gist]
            min_storage_days=180,  # [usage] 2026-06-05; [negot] May 2026; [minimums]
            overhead_bytes=32 * KB,  # [overhead]; [gist] 2023-03-24
            overhead_standard_bytes=8 * KB,  # [overhead]; [gist] 2023-03-24
            put_usd_per_1000=0.05,  # [gist] 2023-03-24; transition $0.05: [negot] May 2026
            get_usd_per_1000=0.0004,  # GET of the restored copy: [c3x] retrieved 2026-12
            restore_usd_per_1000=0.10,  # standard retrieval requests: [gist] 2023-03-24
            needs_restore=True,  # [restore]
            restore_hours=12.0,  # standard retrieval within 12 h: [latency]
        ),
    },
    standard_tier="Standard",  # restore copies and the 8 KB per-object overhead: [restore], [overhead]
    gpu_usd_per_hour=1.006,  # g5.xlarge (1 NVIDIA A10G), on-demand Linux us-east-1: [ec2] 2026-06-17
    cpu_usd_per_hour=0.0816,  # m7g.large (2 vCPU), on-demand Linux us-east-1: [ec2] 2026-06-17
    gb="binary",  # AWS bills GB = 2**30 bytes
    days_per_month=30.0,
)
