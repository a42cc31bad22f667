//! The build's random choices, from a seed: one hash that the layout tree, the forest of the graph's start and
//! NN-descent share.

/// A well-mixed 64-bit hash of four numbers (splitmix64 steps): the build's random choices.
pub fn hash(a: u64, b: u64, c: u64, d: u64) -> u64 {
    let mut x = a;
    for v in [b, c, d] {
        x = x.wrapping_add(v).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    x
}
