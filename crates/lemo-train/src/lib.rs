//! LeMo-NADe trainer: builds a burn model from an IR graph, trains and measures it; dataset loaders.
