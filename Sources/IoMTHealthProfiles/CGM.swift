import IoMTCore

/// CRC-16/MCRF4XX (poly 0x1021 reflected = 0x8408, init 0xFFFF, no final XOR), the E2E-CRC of
/// the CGM service (CGMS 1.0.1 §3.2 E2E-CRC; reference §8). "123456789" → 0x6F91.
public func crc16MCRF4XX<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
    var crc: UInt16 = 0xFFFF
    for b in bytes {
        crc ^= UInt16(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x8408 : crc >> 1 }
    }
    return crc
}

/// One record of a CGM Measurement 0x2AA7 notification (CGM Service 0x181F). GSS §3.47 CGM
/// Measurement; reference §8. A notification may carry several records, each with its own Size.
///
/// `Size u8 | Flags u8 | Glucose SFLOAT mg/dL | Time Offset u16 min | [annunciation: warning,
///  cal/temp, status octets, each if flagged] | [Trend SFLOAT] | [Quality SFLOAT] | [E2E-CRC u16]`.
/// The octet order of the annunciation follows Nordic's code (reference §13.5 [U]).
public struct CGMMeasurement: Hashable, Sendable {
    public var size: UInt8
    public var flags: UInt8
    public var glucose: MedicalFloat
    public var timeOffsetMinutes: UInt16
    public var warning: UInt8?
    public var calTemp: UInt8?
    public var status: UInt8?
    public var trend: MedicalFloat?
    public var quality: MedicalFloat?
    /// The CRC when the record carried one (already verified).
    public var e2eCRC: UInt16?

    /// Decodes every record of one notification. A CRC present (Size = fields + 2) must match,
    /// else `HealthDecodeError` ("e2e-crc"). `requireCRC` (CGM Feature bit 12) makes a missing
    /// CRC an error too.
    public static func decode(_ bytes: [UInt8], requireCRC: Bool = false) throws -> [CGMMeasurement] {
        var out: [CGMMeasurement] = []
        var r = ByteReader(bytes)
        repeat {
            let start = r.offset
            let size = try r.u8("cgm record size")
            guard size >= 6 else { throw HealthDecodeError(field: "cgm record size", reason: "\(size) < 6") }
            let record = Array(try r.bytes(Int(size) - 1, "cgm record"))
            out.append(try decodeRecord([size] + record, requireCRC: requireCRC))
            _ = start
        } while !r.isAtEnd
        return out
    }

    static func decodeRecord(_ rec: [UInt8], requireCRC: Bool) throws -> CGMMeasurement {
        var r = ByteReader(rec)
        let size = try r.u8("cgm record size")
        let flags = try r.u8("cgm flags")
        var base = 6
        if flags & 0x20 != 0 { base += 1 }
        if flags & 0x40 != 0 { base += 1 }
        if flags & 0x80 != 0 { base += 1 }
        if flags & 0x01 != 0 { base += 2 }
        if flags & 0x02 != 0 { base += 2 }
        let hasCRC: Bool
        switch Int(size) {
        case base: hasCRC = false
        case base + 2: hasCRC = true
        default: throw HealthDecodeError(field: "cgm record size", reason: "\(size) does not fit the flags (\(base) or \(base + 2))")
        }
        if requireCRC && !hasCRC { throw HealthDecodeError(field: "e2e-crc", reason: "missing") }
        let glucose = try r.sfloat("cgm glucose concentration")
        let offset = try r.u16le("cgm time offset")
        let warning = flags & 0x20 != 0 ? try r.u8("cgm warning octet") : nil
        let calTemp = flags & 0x40 != 0 ? try r.u8("cgm cal/temp octet") : nil
        let status = flags & 0x80 != 0 ? try r.u8("cgm status octet") : nil
        let trend = flags & 0x01 != 0 ? try r.sfloat("cgm trend") : nil
        let quality = flags & 0x02 != 0 ? try r.sfloat("cgm quality") : nil
        var crc: UInt16?
        if hasCRC {
            let sent = try r.u16le("e2e-crc")
            let computed = crc16MCRF4XX(rec[0..<(rec.count - 2)])
            guard sent == computed else {
                throw HealthDecodeError(field: "e2e-crc", reason: "sent 0x\(String(sent, radix: 16)), computed 0x\(String(computed, radix: 16))")
            }
            crc = sent
        }
        return CGMMeasurement(size: size, flags: flags, glucose: glucose, timeOffsetMinutes: offset, warning: warning,
                              calTemp: calTemp, status: status, trend: trend, quality: quality, e2eCRC: crc)
    }

    /// Annunciation statuses (SIG bit names, reference §8).
    public var statuses: [ProfileStatus] {
        var out: [ProfileStatus] = []
        let st = ["session-stopped", "device-battery-low", "sensor-type-incorrect", "sensor-malfunction",
                  "device-specific-alert", "general-device-fault"]
        let ct = ["time-synchronization-required", "calibration-not-allowed", "calibration-recommended",
                  "calibration-required", "sensor-temp-too-high", "sensor-temp-too-low"]
        let wn = ["below-patient-low", "above-patient-high", "below-hypo", "above-hyper",
                  "rate-of-decrease-exceeded", "rate-of-increase-exceeded", "result-lower-than-device-can-process",
                  "result-higher-than-device-can-process"]
        for (octet, names) in [(status, st), (calTemp, ct), (warning, wn)] {
            guard let octet else { continue }
            for b in setBits(octet) { out.append(ProfileStatus(rawValue: b < names.count ? names[b] : "cgm-annunciation-bit-\(b)")) }
        }
        return out
    }

    /// Glucose → `MDC_CONC_GLU_ISF` 160212 `mg/dL`. Device time = session start + offset when the
    /// host has read the session start time. "Lower/higher than the device can process" and
    /// "sensor malfunction"/"general fault" make the value unavailable. Trend and quality have no
    /// verified MDC code (reference §8) and stay in the typed fields.
    public func normalized(sessionStart: CGMSessionStartTime? = nil) -> DecodedMeasurement {
        var o = makeObservation(.glucoseISF, glucose, .milligramPerDecilitre)
        if let w = warning, w & 0x40 != 0 { o.value = .unavailable(.belowDeviceRange) }
        if let w = warning, w & 0x80 != 0 { o.value = .unavailable(.aboveDeviceRange) }
        if let s = status, s & 0x08 != 0 || s & 0x20 != 0 { o.value = .unavailable(.invalidMeasurement) }
        var m = DecodedMeasurement(observations: [o], statuses: statuses)
        if let ss = sessionStart, var dt = DeviceTime(ss.start, addingMinutes: Int(timeOffsetMinutes)) {
            dt.statedUTCOffsetMinutes = ss.utcOffsetMinutes
            m.deviceTime = dt
        }
        return m
    }
}

/// CGM Session Start Time 0x2AAA: `Date Time 7 | Time Zone s8 (15 min) | DST Offset u8 | [E2E-CRC]`
/// (reference §8). Also encodes it, for setting the session start from the gateway clock.
public struct CGMSessionStartTime: Hashable, Sendable {
    public var start: DateTime
    public var timeZone: Int8
    public var dstOffset: UInt8

    public init(start: DateTime, timeZone: Int8, dstOffset: UInt8) {
        self.start = start; self.timeZone = timeZone; self.dstOffset = dstOffset
    }

    public static func decode(_ bytes: [UInt8]) throws -> CGMSessionStartTime {
        var r = ByteReader(bytes)
        let v = CGMSessionStartTime(start: try DateTime.read(&r), timeZone: Int8(bitPattern: try r.u8("time zone")),
                                    dstOffset: try r.u8("dst offset"))
        if r.remaining >= 2 {
            let sent = try r.u16le("e2e-crc")
            let computed = crc16MCRF4XX(bytes[0..<9])
            guard sent == computed else { throw HealthDecodeError(field: "e2e-crc", reason: "mismatch") }
        }
        return v
    }

    public func encoded(withCRC: Bool) -> [UInt8] {
        var b = start.encoded + [UInt8(bitPattern: timeZone), dstOffset]
        if withCRC { let c = crc16MCRF4XX(b); b += [UInt8(c & 0xFF), UInt8(c >> 8)] }
        return b
    }

    /// UTC offset in minutes (TZ + DST), nil when either is unknown.
    public var utcOffsetMinutes: Int? { LocalTimeInformation(timeZone: timeZone, dstOffset: dstOffset).utcOffsetMinutes }
}
