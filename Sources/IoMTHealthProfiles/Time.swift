import IoMTCore

/// Local Time Information 0x2A0F (Time Zone 0x2A0E s8 in 15-minute units, −128 unknown; DST
/// Offset 0x2A0D: 0, 2, 4, 8 = +0, +0.5, +1, +2 h, 255 unknown). GSS §3.135; reference §10.4.
public struct LocalTimeInformation: Hashable, Sendable {
    public var timeZone: Int8
    public var dstOffset: UInt8
    public init(timeZone: Int8, dstOffset: UInt8) { self.timeZone = timeZone; self.dstOffset = dstOffset }

    public static func decode(_ bytes: [UInt8]) throws -> LocalTimeInformation {
        var r = ByteReader(bytes)
        return LocalTimeInformation(timeZone: Int8(bitPattern: try r.u8("time zone")), dstOffset: try r.u8("dst offset"))
    }

    public var encoded: [UInt8] { [UInt8(bitPattern: timeZone), dstOffset] }

    /// Minutes east of UTC including DST; nil when unknown or out of the GSS range.
    public var utcOffsetMinutes: Int? {
        guard timeZone != -128, (-48...56).contains(Int(timeZone)) else { return nil }
        let dst: Int
        switch dstOffset {
        case 0: dst = 0
        case 2: dst = 30
        case 4: dst = 60
        case 8: dst = 120
        default: return nil
        }
        return Int(timeZone) * 15 + dst
    }
}

/// Current Time 0x2A2B (Current Time Service 0x1805): `Exact Time 256 (Day Date Time |
/// Fractions256) | Adjust Reason`. GSS §3.62 Current Time; reference §10.4.
public struct CurrentTime: Hashable, Sendable {
    public var dateTime: DateTime
    /// 1 Monday … 7 Sunday, 0 unknown.
    public var dayOfWeek: UInt8
    /// 1/256 s.
    public var fractions256: UInt8
    /// Bit 0 manual update, 1 external reference update, 2 time zone change, 3 DST change.
    public var adjustReason: UInt8

    public init(dateTime: DateTime, dayOfWeek: UInt8, fractions256: UInt8, adjustReason: UInt8) {
        self.dateTime = dateTime; self.dayOfWeek = dayOfWeek; self.fractions256 = fractions256; self.adjustReason = adjustReason
    }

    public static func decode(_ bytes: [UInt8]) throws -> CurrentTime {
        var r = ByteReader(bytes)
        return CurrentTime(dateTime: try DateTime.read(&r), dayOfWeek: try r.u8("day of week"),
                           fractions256: try r.u8("fractions256"), adjustReason: try r.u8("adjust reason"))
    }

    public var encoded: [UInt8] { dateTime.encoded + [dayOfWeek, fractions256, adjustReason] }

    /// The value to write to a device's clock from the gateway's clock, in the device's local
    /// time (`utcOffsetMinutes` east of UTC). Adjust reason defaults to "external reference update".
    public init(gatewayTime t: Timestamp, utcOffsetMinutes: Int, adjustReason: UInt8 = 0x02) {
        let local = t.millisecondsSinceEpoch + Int64(utcOffsetMinutes) * 60_000
        var days = local / 86_400_000
        var ms = local - days * 86_400_000
        if ms < 0 { ms += 86_400_000; days -= 1 }
        let (y, mo, d) = CivilTime.civil(days)
        // 1970-01-01 was a Thursday (ISO weekday 4).
        let dow = UInt8(((days % 7 + 7) % 7 + 3) % 7 + 1)
        dateTime = DateTime(year: UInt16(clamping: y), month: UInt8(clamping: mo), day: UInt8(clamping: d),
                            hours: UInt8(ms / 3_600_000), minutes: UInt8((ms / 60_000) % 60), seconds: UInt8((ms / 1000) % 60))
        dayOfWeek = dow
        fractions256 = UInt8((ms % 1000) * 256 / 1000)
        self.adjustReason = adjustReason
    }

    /// The device's clock as a `DeviceTime` (fractions included); nil when unknown/invalid.
    public var deviceTime: DeviceTime? {
        guard var dt = DeviceTime(dateTime) else { return nil }
        dt.fieldsAsUTCMilliseconds += Int64(fractions256) * 1000 / 256
        return dt
    }

    /// Device − gateway clock offset in milliseconds (the `DeviceClockState.measuredOffset` input),
    /// nil when the device time is unknown.
    public func offset(from gatewayNow: Timestamp, utcOffsetMinutes: Int) -> Int64? {
        guard let dt = deviceTime else { return nil }
        return dt.instant(assumedUTCOffsetMinutes: utcOffsetMinutes).millisecondsSinceEpoch - gatewayNow.millisecondsSinceEpoch
    }

    /// Whether to write the device clock: when the skew exceeds `thresholdMilliseconds`
    /// (SpeziBluetooth uses 8 s, reference §10.5) or the device time is unknown.
    public func needsSetting(gatewayNow: Timestamp, utcOffsetMinutes: Int, thresholdMilliseconds: Int64 = 8000) -> Bool {
        guard let off = offset(from: gatewayNow, utcOffsetMinutes: utcOffsetMinutes) else { return true }
        return off.magnitude > UInt64(thresholdMilliseconds.magnitude)
    }
}

/// Date Time 0x2A08 characteristic, decoding and encoding (GSS §3.70; reference §10.4).
public enum DateTimeCharacteristic {
    public static func decode(_ bytes: [UInt8]) throws -> DateTime {
        var r = ByteReader(bytes)
        return try DateTime.read(&r)
    }
    public static func encode(_ dt: DateTime) -> [UInt8] { dt.encoded }
}
