import IoMTCore
import IoMTHealthProfiles
import Testing

/// `"1E 55 32 00"` → bytes.
func hex(_ s: String) -> [UInt8] {
    s.split(separator: " ").map { UInt8($0, radix: 16)! }
}

/// The numeric value of the observation with `code`, or nil.
func value(_ m: DecodedMeasurement, _ code: MDCCode) -> Double? {
    guard let o = m.observations.first(where: { $0.code == code }), case .numeric(let v) = o.value else { return nil }
    return v
}

func status(_ m: DecodedMeasurement, _ code: MDCCode) -> ValueStatus? {
    guard let o = m.observations.first(where: { $0.code == code }), case .unavailable(let s) = o.value else { return nil }
    return s
}

func unit(_ m: DecodedMeasurement, _ code: MDCCode) -> UCUMUnit? {
    m.observations.first(where: { $0.code == code })?.unit
}

func close(_ a: Double?, _ b: Double, _ eps: Double = 1e-9) -> Bool {
    guard let a else { return false }
    return abs(a - b) <= eps * max(1, abs(b))
}


/// Every proper prefix of `bytes` must throw a truncation error naming a field.
func expectEveryPrefixThrows(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation,
                             _ decode: ([UInt8]) throws -> Void) {
    for n in 0..<bytes.count {
        do {
            try decode(Array(bytes[0..<n]))
            Issue.record("prefix of \(n) octets decoded without error", sourceLocation: sourceLocation)
        } catch let e as ByteReaderError {
            #expect(!e.field.isEmpty && e.available < e.needed, "\(e)", sourceLocation: sourceLocation)
        } catch let e as HealthDecodeError {
            #expect(!e.field.isEmpty, sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error type \(error)", sourceLocation: sourceLocation)
        }
    }
}
