"""Work small enough to do on the event loop rather than in a worker thread.

A trip to a worker thread and back costs two wake-ups and two hand-overs of the GIL:
on a busy 2-core machine that is more than hashing, decoding or writing to the local
cache a buffer of up to `INLINE_BYTES` (a 64 KiB packet read cold took 4.4-5.5 ms
before its decode and cache write were done inline, 3.1-3.8 ms after; issue 21). Megabyte blocks
still go to worker threads, so the event loop never stalls on them.
"""

INLINE_BYTES = 256 << 10
