"""Work small enough to do on the event loop rather than in a worker thread.

A trip to a worker thread and back costs two wake-ups and two hand-overs of the GIL:
on a busy 2-core machine that is more than hashing, decoding or writing to the local
cache a buffer of up to `INLINE_BYTES` (a 64 KiB packet read cold took 4.4-5.5 ms
before its decode and cache write were done inline, 3.1-3.8 ms after; issue 21). The same
holds on the write side: reading a small dirty block back from the cache, encoding it and
encoding the pack it travels in took 0.4-0.55 ms each as worker-thread trips, of a 13 ms
fsync'd 64 KiB packet on SeaweedFS whose two parallel PUTs took 5.5-8 ms. Megabyte blocks
still go to worker threads, so the event loop never stalls on them.
"""

INLINE_BYTES = 256 << 10
