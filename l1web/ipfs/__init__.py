"""Optional IPFS layer: content added and pinned by CID, an IPNS-published sync document, peers.

Off unless `IPFS_API` is set. `client` speaks the Kubo-compatible HTTP RPC (js-ipfs and Kubo),
`daemon` starts a local js-ipfs for tests and `make run`, `pinning` adds run outputs and keeps
the SHA3 → CID index, `sync` is the background IPNS task, `fetch` brings an item this host lacks
(from a peer's CID or from the L1 server over HTTP) and verifies its SHA3 before use.
"""
