"""The file job of `voxseg predict`: volumes of any size cut into blocks (`blocks`), shared between
torchrun ranks (`shares`, `rank_stream`), recorded for `--resume` (`journal`), written plane by plane,
labelled slab by slab (`block_instances`, `stitching`); `files.predict_files` runs it."""
