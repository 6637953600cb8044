import IoMTCore
@testable import IoMTSerial
import IoMTSerialSimulators

func hex(_ s: String) -> [UInt8] {
    s.split(separator: " ").compactMap { UInt8($0, radix: 16) }
}

/// Feeds all bytes at once.
func whole<D: StreamDecoder>(_ d: D, _ bytes: [UInt8]) -> [DecoderEvent] {
    var d = d
    return d.feed(bytes)
}

/// Feeds one byte at a time.
func bytewise<D: StreamDecoder>(_ d: D, _ bytes: [UInt8]) -> [DecoderEvent] {
    var d = d
    var out: [DecoderEvent] = []
    for b in bytes { out += d.feed(CollectionOfOne(b)) }
    return out
}

/// Feeds random-sized chunks (1...max).
func chunked<D: StreamDecoder>(_ d: D, _ bytes: [UInt8], seed: UInt64, max: Int = 17) -> [DecoderEvent] {
    var d = d
    var rng = SimRandom(seed: seed)
    var out: [DecoderEvent] = []
    var i = 0
    while i < bytes.count {
        let n = Int.random(in: 1...max, using: &rng)
        out += d.feed(bytes[i..<min(bytes.count, i + n)])
        i += n
    }
    return out
}

/// Decodes `bytes` whole, byte by byte and in random chunks; the three must agree.
func decodeAllWays<D: StreamDecoder>(_ d: D, _ bytes: [UInt8]) -> (events: [DecoderEvent], agree: Bool) {
    let a = whole(d, bytes)
    let b = bytewise(d, bytes)
    let c = chunked(d, bytes, seed: 7)
    let e = chunked(d, bytes, seed: 99, max: 3)
    return (a, a == b && a == c && a == e)
}

extension [DecoderEvent] {
    var readings: [DecodedReading] {
        compactMap { if case .reading(let r) = $0 { r } else { nil } }
    }
    var states: [DeviceState] {
        compactMap { if case .state(let s) = $0 { s } else { nil } }
    }
    var discardedBytes: Int {
        reduce(0) { if case .discarded(let n, _) = $1 { $0 + n } else { $0 } }
    }
    var discardReasons: [DiscardReason] {
        compactMap { if case .discarded(_, let r) = $0 { r } else { nil } }
    }
}

extension DecodedReading {
    func value(_ code: MDCCode) -> ObservationValue? {
        observations.first { $0.code == code }?.value
    }
}
