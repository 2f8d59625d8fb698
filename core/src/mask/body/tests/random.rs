//! Random JSON documents: masked output is the same at random splits,
//! parses, and equals a reference masking done on the parsed tree.
