"""The metadata journal: change sets and snapshots on the pools, and rebuilding from them."""
