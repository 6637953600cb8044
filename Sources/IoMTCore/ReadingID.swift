/// A reading's stable, unique, time-ordered identifier: a UUIDv7 (RFC 9562 §5.7).
///
/// Assigned once, when the gateway accepts the reading, and stored with it, so every
/// redelivery of the same reading carries the same id: consumers de-duplicate on it.
public struct ReadingID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public static func < (a: ReadingID, b: ReadingID) -> Bool {
        (a.high, a.low) < (b.high, b.low)
    }

    /// Milliseconds since the Unix epoch encoded in the first 48 bits.
    public var unixMilliseconds: Int64 { Int64(high >> 16) }

    /// Canonical 8-4-4-4-12 lower-case hex form.
    public var description: String {
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(36)
        func put(_ v: UInt64, nibbles: Int) {
            var n = nibbles - 1
            while n >= 0 {
                out.append(hex[Int((v >> UInt64(n * 4)) & 0xF)])
                n -= 1
            }
        }
        put(high >> 32, nibbles: 8); out.append(UInt8(ascii: "-"))
        put((high >> 16) & 0xFFFF, nibbles: 4); out.append(UInt8(ascii: "-"))
        put(high & 0xFFFF, nibbles: 4); out.append(UInt8(ascii: "-"))
        put(low >> 48, nibbles: 4); out.append(UInt8(ascii: "-"))
        put(low & 0xFFFF_FFFF_FFFF, nibbles: 12)
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses the canonical hex form (any case). Returns nil otherwise.
    public init?(_ text: String) {
        var nibbles = [UInt64]()
        nibbles.reserveCapacity(32)
        for (i, c) in text.utf8.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                guard c == UInt8(ascii: "-") else { return nil }
                continue
            }
            switch c {
            case 48...57: nibbles.append(UInt64(c - 48))
            case 97...102: nibbles.append(UInt64(c - 87))
            case 65...70: nibbles.append(UInt64(c - 55))
            default: return nil
            }
        }
        guard nibbles.count == 32, text.utf8.count == 36 else { return nil }
        high = nibbles[0..<16].reduce(0) { $0 << 4 | $1 }
        low = nibbles[16..<32].reduce(0) { $0 << 4 | $1 }
    }
}

/// Generates UUIDv7 values that are strictly increasing within one generator, even when
/// several are made in the same millisecond or the wall clock steps back (RFC 9562 §6.2,
/// method 1: a 12-bit counter in `rand_a`, the timestamp held at the last value on overflow
/// or clock regression).
public struct ReadingIDGenerator: Sendable {
    private var lastMillis: Int64 = -1
    private var counter: UInt64 = 0

    public init() {}

    public mutating func next(at time: Timestamp) -> ReadingID {
        var rng = SystemRandomNumberGenerator()
        return next(at: time, using: &rng)
    }

    public mutating func next<R: RandomNumberGenerator>(at time: Timestamp, using rng: inout R) -> ReadingID {
        var ms = max(time.millisecondsSinceEpoch, 0)
        if ms > lastMillis {
            lastMillis = ms
            counter = rng.next() & 0x1FF // leave headroom for increments within the millisecond
        } else {
            ms = lastMillis
            counter += 1
            if counter > 0xFFF {
                lastMillis += 1
                ms = lastMillis
                counter = 0
            }
        }
        let high = (UInt64(ms) & 0xFFFF_FFFF_FFFF) << 16 | 0x7000 | (counter & 0xFFF)
        let low = (rng.next() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        return ReadingID(high: high, low: low)
    }
}
