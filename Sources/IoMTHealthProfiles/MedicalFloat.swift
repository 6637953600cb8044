import IoMTCore

/// An IEEE 11073-20601 medical float: SFLOAT (16-bit, `medfloat16`) or FLOAT (32-bit, `medfloat32`).
///
/// IEEE 11073-20601 §F.8 SFLOAT / FLOAT; reference `ble-health-profiles.md` §1.
/// * SFLOAT: exponent = bits 15-12 (signed 4-bit), mantissa = bits 11-0 (signed 12-bit).
/// * FLOAT: exponent = bits 31-24 (signed 8-bit), mantissa = bits 23-0 (signed 24-bit).
///
/// The special values (NaN, NRes, ±INFINITY, reserved) are never numbers: they decode to
/// `.special(ValueStatus)`. A reserved mantissa with a non-zero exponent is treated as reserved
/// too (reference §1.2: "check the full word first, then treat a reserved mantissa with a
/// non-zero exponent as invalid").
public struct MedicalFloat: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// `mantissa × 10^exponent`; the exponent carries the precision (0x0002 = 2, 0xF014 = 2.0).
        case finite(mantissa: Int32, exponent: Int8)
        case special(ValueStatus)
    }

    public let kind: Kind

    public init(kind: Kind) { self.kind = kind }

    /// Decodes an SFLOAT word (already assembled little-endian). IEEE 11073-20601 §F.8.
    public init(sfloat raw: UInt16) {
        switch raw {
        case 0x07FF: kind = .special(.notANumber)
        case 0x0800: kind = .special(.notAtThisResolution)
        case 0x07FE: kind = .special(.positiveInfinity)
        case 0x0802: kind = .special(.negativeInfinity)
        case 0x0801: kind = .special(.reserved)
        default:
            let m12 = Int32(raw & 0x0FFF)
            let mantissa = m12 >= 0x0800 ? m12 - 0x1000 : m12
            let e4 = Int8(truncatingIfNeeded: raw >> 12)
            let exponent = e4 >= 8 ? e4 - 16 : e4
            // Reserved mantissas 0x7FE...0x802 with a non-zero exponent.
            if mantissa >= 0x07FE || mantissa <= -0x07FE { kind = .special(.reserved) }
            else { kind = .finite(mantissa: mantissa, exponent: exponent) }
        }
    }

    /// Decodes a FLOAT word (already assembled little-endian). IEEE 11073-20601 §F.8.
    public init(float raw: UInt32) {
        switch raw {
        case 0x007F_FFFF: kind = .special(.notANumber)
        case 0x0080_0000: kind = .special(.notAtThisResolution)
        case 0x007F_FFFE: kind = .special(.positiveInfinity)
        case 0x0080_0002: kind = .special(.negativeInfinity)
        case 0x0080_0001: kind = .special(.reserved)
        default:
            let m24 = Int32(raw & 0x00FF_FFFF)
            let mantissa = m24 >= 0x0080_0000 ? m24 - 0x0100_0000 : m24
            let exponent = Int8(bitPattern: UInt8(truncatingIfNeeded: raw >> 24))
            if mantissa >= 0x007F_FFFE || mantissa <= -0x007F_FFFE { kind = .special(.reserved) }
            else { kind = .finite(mantissa: mantissa, exponent: exponent) }
        }
    }

    /// The value as a finite `Double`, or nil for a special value (or an exponent so large the
    /// result is not finite). Negative exponents divide by an exact power of ten, so 87×10⁻¹
    /// is the double nearest 8.7.
    public var doubleValue: Double? {
        guard case .finite(let m, let e) = kind else { return nil }
        let v: Double
        if e >= 0 { v = Double(m) * MedicalFloat.pow10(Int(e)) }
        else { v = Double(m) / MedicalFloat.pow10(-Int(e)) }
        return v.isFinite ? v : nil
    }

    /// The value as an `ObservationValue`: a number, or `.unavailable` with the special's status.
    public var observationValue: ObservationValue {
        switch kind {
        case .special(let s): return .unavailable(s)
        case .finite:
            guard let d = doubleValue else { return .unavailable(.outOfRange) }
            return .numeric(d)
        }
    }

    /// Decimal text keeping the transmitted precision: 0xF014 → "2.0", 0xE0C8 → "2.00",
    /// 0x1002 → "20". Nil for specials.
    public var decimalString: String? {
        guard case .finite(let m, let e) = kind else { return nil }
        let negative = m < 0
        var digits = String(m.magnitude)
        if e >= 0 {
            if m != 0 { digits += String(repeating: "0", count: Int(e)) }
        } else {
            let places = Int(-e)
            if digits.count <= places { digits = String(repeating: "0", count: places - digits.count + 1) + digits }
            digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -places))
        }
        return negative ? "-" + digits : digits
    }

    public var description: String {
        switch kind {
        case .finite: decimalString ?? "?"
        case .special(let s): s.rawValue
        }
    }

    /// SFLOAT encoding (for tests and for writing values to devices). Nil when out of range.
    public static func sfloatWord(mantissa: Int32, exponent: Int8) -> UInt16? {
        guard (-2045...2045).contains(mantissa), (-8...7).contains(exponent) else { return nil }
        return UInt16(UInt8(bitPattern: exponent) & 0x0F) << 12 | UInt16(truncatingIfNeeded: mantissa) & 0x0FFF
    }

    /// FLOAT encoding. Nil when out of range.
    public static func floatWord(mantissa: Int32, exponent: Int8) -> UInt32? {
        guard (-0x7F_FFFD...0x7F_FFFD).contains(mantissa) else { return nil }
        return UInt32(UInt8(bitPattern: exponent)) << 24 | UInt32(bitPattern: mantissa) & 0x00FF_FFFF
    }

    static func pow10(_ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<min(n, 400) { r *= 10 }
        return r
    }
}

extension ByteReader {
    /// Reads a little-endian SFLOAT (IEEE 11073-20601 §F.8).
    public mutating func sfloat(_ field: StaticString) throws(ByteReaderError) -> MedicalFloat {
        MedicalFloat(sfloat: try u16le(field))
    }

    /// Reads a little-endian FLOAT (IEEE 11073-20601 §F.8).
    public mutating func float(_ field: StaticString) throws(ByteReaderError) -> MedicalFloat {
        MedicalFloat(float: try u32le(field))
    }
}
