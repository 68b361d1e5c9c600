"""The block layer: file blocks (inode, index) to replicated objects and back.

The filesystem core and the cache call down into it through a small interface: store a
block, fetch a block, make the blocks of a file durable, drop the blocks of a file from
an index on. Below it are the codec (block ids, compression, encryption) and the
replicated store (pools); beside it the metadata (block map and records) and the
journal, which it tells about new mappings by a call.
"""
