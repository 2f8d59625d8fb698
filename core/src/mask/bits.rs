//! The byte scan's first stage: 64 bytes at a time, a class per byte
//! (digit, `@`, `+`) compared in vector registers and
//! packed into bit masks, then shape tests done with shifts and ands over those masks,
//! with the next block as lookahead. What passes is a superset of what the validators accept;
//! for clean text (ids, amounts, dates, uuids, words) nothing does, and the
//! value costs one vectorised pass.

/// Bit `i` is byte `i` of the block.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Block {
    pub(super) digit: u64,
    pub(super) at: u64,
    plus: u64,
}

/// Packs 64 bytes that are each 0 or 1 into a mask, eight at a time with
/// one multiplication.
fn pack(flags: &[u8; 64]) -> u64 {
    let mut mask = 0u64;
    for (k, chunk) in flags.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        mask |= (word.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
    }
    mask
}

/// The mask of the bytes of `bytes` in class `f` (a vectorised compare, then
/// [`pack`]).
fn class(bytes: &[u8; 64], f: impl Fn(u8) -> bool) -> u64 {
    let mut flags = [0u8; 64];
    for (flag, &b) in flags.iter_mut().zip(bytes) {
        *flag = u8::from(f(b));
    }
    pack(&flags)
}

/// Whether `bytes` holds `byte` (one vectorised pass, no mask).
fn any(bytes: &[u8; 64], byte: u8) -> bool {
    bytes.iter().fold(0u8, |acc, &b| acc | u8::from(b == byte)) != 0
}

/// Which masks to build (the others stay empty).
#[derive(Debug, Clone, Copy)]
pub(super) struct Classes {
    pub(super) digit: bool,
    pub(super) at: bool,
    pub(super) plus: bool,
}

impl Block {
    /// Classifies `v[base..base + 64]` (missing bytes classify as nothing)
    /// into the masks `classes` asks for.
    pub(super) fn load(v: &[u8], base: usize, classes: Classes) -> Block {
        // A fixed 64-byte copy: whole vectors, no tail to handle.
        let src = v.get(base..).unwrap_or_default();
        let src = src.get(..64).unwrap_or(src);
        let mut bytes = [0u8; 64];
        match <&[u8; 64]>::try_from(src) {
            // A whole block: an inlined move, not a call to `memcpy`.
            Ok(whole) => bytes = *whole,
            Err(_) => {
                if let Some(dst) = bytes.get_mut(..src.len()) {
                    dst.copy_from_slice(src);
                }
            }
        }
        let mut block = Block::default();
        if classes.digit {
            block.digit = class(&bytes, |b| b.wrapping_sub(b'0') < 10);
        }
        // `@` and `+` are rare: a vectorised test first, the mask only if
        // the block holds one.
        if classes.at && any(&bytes, b'@') {
            block.at = class(&bytes, |b| b == b'@');
        }
        if classes.plus && any(&bytes, b'+') {
            block.plus = class(&bytes, |b| b == b'+');
        }
        block
    }
}

/// Which stage-two checks a block needs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Wanted {
    pub(super) card: bool,
    pub(super) ssn: bool,
    pub(super) phone: bool,
    pub(super) iban: bool,
}

/// Digits among the `len` bits of `x` from bit `at` on.
/// (At most 32 bits, which [`ones`] counts.)
fn digits_in(x: u128, at: u32, len: u32) -> u32 {
    ones(((x >> at) as u32) & ((1u32 << len) - 1))
}

/// Set bits in each byte value.
// Evaluated at compile time: an index out of bounds would fail the build,
// not panic at run time.
#[allow(clippy::indexing_slicing)]
const ONES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = (i as u8).count_ones() as u8;
        i += 1;
    }
    table
};

/// `x.count_ones()` by table: the build targets x86-64 without `popcnt`,
/// where `count_ones` is a dozen dependent instructions.
fn ones(x: u32) -> u32 {
    x.to_le_bytes()
        .iter()
        .map(|&b| u32::from(ONES.get(usize::from(b)).copied().unwrap_or(0)))
        .sum()
}

/// Whether byte `i` of `v` is an ASCII capital (past the end: no).
fn capital(v: &[u8], i: usize) -> bool {
    v.get(i).is_some_and(|b| b.is_ascii_uppercase())
}

/// Positions in `cur` where a digit-based detector could match (a digit of
/// the run to validate, or the `+` / capital letter that starts it).
/// `cur` is `v[base..base + 64]`, `prev_digit` the previous block's digit
/// mask, `next` the following block (lookahead).
pub(super) fn triggers(
    v: &[u8],
    base: usize,
    cur: &Block,
    next: &Block,
    prev_digit: u64,
    want: Wanted,
) -> u64 {
    let d = u128::from(cur.digit) | u128::from(next.digit) << 64;
    // Runs of 2, 3 and 4 digits starting at each position.
    let d2 = d & (d >> 1);
    let d3 = d2 & (d >> 2);
    let d4 = d2 & (d2 >> 2);
    // Three digits then a non-digit.
    let d3x = d3 & !(d >> 3);
    let mut hits = 0u128;
    if want.ssn {
        // ddd?dd?dddd
        hits |= d3x & (d2 >> 4) & !(d >> 6) & (d4 >> 7);
    }
    if want.phone {
        // ddd?dddd: the exchange and line of every NANP number.
        hits |= d3x & (d4 >> 4);
        // `+` then 8 digits within 24 bytes.
        let mut plus = cur.plus;
        while plus != 0 {
            let p = plus.trailing_zeros();
            if digits_in(d, p + 1, 24) >= 8 {
                hits |= 1 << p;
            }
            plus &= plus - 1;
        }
    }
    if want.iban {
        // Two capitals then two digits. Capitals are common (names,
        // cities) but two non-digits before a pair of digits are not: the
        // bytes are looked at only there.
        let mut two_before = (d2 >> 2) as u64 & !cur.digit & !((d >> 1) as u64);
        while two_before != 0 {
            let p = two_before.trailing_zeros() as usize;
            if capital(v, base + p) && capital(v, base + p + 1) {
                hits |= 1 << p;
            }
            two_before &= two_before - 1;
        }
    }
    if want.card {
        // A card's first group has 3+ digits and its first 13 digits lie
        // within 17 bytes (groups of 3+ joined by single separators).
        let before = d << 1 | u128::from(prev_digit >> 63);
        let mut starts = (d3 & !before) as u64;
        while starts != 0 {
            let p = starts.trailing_zeros();
            if digits_in(d, p, 17) >= 13 {
                hits |= 1 << p;
            }
            starts &= starts - 1;
        }
    }
    hits as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form with a mask of capitals, as it was: the lookups of
    /// capitals must find the same positions.
    fn triggers_with_mask(
        v: &[u8],
        base: usize,
        cur: &Block,
        next: &Block,
        prev_digit: u64,
        want: Wanted,
    ) -> u64 {
        let upper = |at: usize| {
            let mut bytes = [0u8; 64];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = v.get(at + i).copied().unwrap_or(0);
            }
            class(&bytes, |x| x.is_ascii_uppercase())
        };
        let d = u128::from(cur.digit) | u128::from(next.digit) << 64;
        let d2 = d & (d >> 1);
        let d3 = d2 & (d >> 2);
        let d4 = d2 & (d2 >> 2);
        let d3x = d3 & !(d >> 3);
        let mut hits = 0u128;
        if want.ssn {
            hits |= d3x & (d2 >> 4) & !(d >> 6) & (d4 >> 7);
        }
        if want.phone {
            hits |= d3x & (d4 >> 4);
            let mut plus = cur.plus;
            while plus != 0 {
                let p = plus.trailing_zeros();
                if ((d >> (p + 1)) & 0xff_ffff).count_ones() >= 8 {
                    hits |= 1 << p;
                }
                plus &= plus - 1;
            }
        }
        if want.iban {
            let u = u128::from(upper(base)) | u128::from(upper(base + 64)) << 64;
            hits |= u & (u >> 1) & (d2 >> 2);
        }
        if want.card {
            let before = d << 1 | u128::from(prev_digit >> 63);
            let mut starts = (d3 & !before) as u64;
            while starts != 0 {
                let p = starts.trailing_zeros();
                if ((d >> p) & 0x1_ffff).count_ones() >= 13 {
                    hits |= 1 << p;
                }
                starts &= starts - 1;
            }
        }
        hits as u64
    }

    #[test]
    fn capitals_looked_up_match_the_mask() {
        const BYTES: &[u8] = b"0123456789AGZaz +-@.";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let classes = Classes {
            digit: true,
            at: true,
            plus: true,
        };
        let want = Wanted {
            card: true,
            ssn: true,
            phone: true,
            iban: true,
        };
        for round in 0..20_000 {
            let len = 1 + (next() % 200) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    // Digit-heavy in some rounds.
                    let r = next();
                    if round % 3 == 0 && r % 3 != 0 {
                        b'0' + (r % 10) as u8
                    } else {
                        BYTES[(r % BYTES.len() as u64) as usize]
                    }
                })
                .collect();
            let mut prev = 0;
            for base in (0..len).step_by(64) {
                let cur = Block::load(&v, base, classes);
                let ahead = Block::load(&v, base + 64, classes);
                assert_eq!(
                    triggers(&v, base, &cur, &ahead, prev, want),
                    triggers_with_mask(&v, base, &cur, &ahead, prev, want),
                    "{:?}",
                    String::from_utf8_lossy(&v)
                );
                prev = cur.digit;
            }
        }
    }

    #[test]
    fn ones_counts() {
        for x in [
            0u32,
            1,
            0xff,
            0x1_0000,
            0xffff_ffff,
            0x8000_0001,
            0x0f0f_1234,
        ] {
            assert_eq!(ones(x), x.count_ones());
        }
    }
}
