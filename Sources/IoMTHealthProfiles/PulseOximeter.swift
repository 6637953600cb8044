import IoMTCore

/// PLX measurement status and device-and-sensor status (GSS §3.172 PLX Spot-Check Measurement
/// fields; reference §5.3).
public enum PLXStatus {
    /// Measurement Status (u16; bits 0-4 RFU) → statuses.
    public static func measurementStatuses(_ s: UInt16) -> [ProfileStatus] {
        let names: [Int: ProfileStatus] = [
            5: "measurement-ongoing", 6: .earlyEstimate, 7: "validated-data", 8: "fully-qualified-data",
            9: .fromStorage, 10: .demonstrationData, 11: .testData, 12: .calibrationOngoing,
            13: .notAvailable, 14: .questionable, 15: .invalid,
        ]
        return setBits(s).compactMap { names[$0] }
    }

    /// Device and Sensor Status (u24; bits 16-23 RFU) → statuses, named as the PHD IG
    /// `MDC_PULS_OXIM_DEV_STATUS` 150604.(15 − bit) entries (reference §5.3, pairing [C]).
    public static func deviceAndSensorStatuses(_ s: UInt32) -> [ProfileStatus] {
        let names: [ProfileStatus] = [
            "device-extended-update", "device-equipment-malfunction", "signal-processing-irregular",
            "signal-inadequate", "signal-poor", "signal-low-perfusion", "signal-erratic", "signal-non-pulsatile",
            "signal-pulse-questionable", "signal-searching", "sensor-interference", "sensor-off",
            "sensor-unsupported", "sensor-displaced", "sensor-malfunction", "sensor-disconnected",
        ]
        return setBits(s & 0xFFFF).map { names[$0] }
    }

    /// What the measurement status does to the values (PHD IG §12.3 mapping): invalid → no
    /// number; unavailable → no number. Questionable/early/calibrating stay numbers with statuses.
    static func valueOverride(_ s: UInt16?) -> ValueStatus? {
        guard let s else { return nil }
        if s & (1 << 15) != 0 { return .invalidMeasurement }
        if s & (1 << 13) != 0 { return .notAvailable }
        return nil
    }

    static func isPatientData(_ s: UInt16?) -> Bool {
        guard let s else { return true }
        return s & (1 << 10) == 0 && s & (1 << 11) == 0
    }
}

/// PLX Spot-check Measurement 0x2A5E (Pulse Oximeter Service 0x1822). GSS §3.172; reference §5.1.
///
/// `Flags | SpO2 SFLOAT | PR SFLOAT | [Timestamp 7] | [Meas Status u16] | [DSS u24] | [PAI SFLOAT]`;
/// flag bit 4 = device clock not set.
public struct PLXSpotCheckMeasurement: Hashable, Sendable {
    public var flags: UInt8
    public var spo2: MedicalFloat
    public var pulseRate: MedicalFloat
    public var timeStamp: DateTime?
    public var measurementStatus: UInt16?
    public var deviceAndSensorStatus: UInt32?
    public var pulseAmplitudeIndex: MedicalFloat?
    public var deviceClockNotSet: Bool { flags & 0x10 != 0 }

    public static func decode(_ bytes: [UInt8]) throws -> PLXSpotCheckMeasurement {
        var r = ByteReader(bytes)
        let flags = try r.u8("flags")
        let spo2 = try r.sfloat("spo2")
        let pr = try r.sfloat("pulse rate")
        let ts = flags & 0x01 != 0 ? try DateTime.read(&r) : nil
        let ms = flags & 0x02 != 0 ? try r.u16le("measurement status") : nil
        let dss = flags & 0x04 != 0 ? try r.u24le("device and sensor status") : nil
        let pai = flags & 0x08 != 0 ? try r.sfloat("pulse amplitude index") : nil
        return PLXSpotCheckMeasurement(flags: flags, spo2: spo2, pulseRate: pr, timeStamp: ts, measurementStatus: ms,
                                       deviceAndSensorStatus: dss, pulseAmplitudeIndex: pai)
    }

    /// SpO2 → 150456 `%` (LOINC 2708-6); PR → 149530 `/min` (8867-4); PAI → 150488 `%` [U code].
    /// Device time from the time stamp, flagged unreliable when the device clock is not set (§13.13).
    public var normalized: DecodedMeasurement {
        var m = plxNormalized(spo2: spo2, pr: pulseRate, pai: pulseAmplitudeIndex, status: measurementStatus,
                              dss: deviceAndSensorStatus)
        m.statuses.append("modality-spot")
        if deviceClockNotSet { m.statuses.append(.deviceClockNotSet) }
        if let ts = timeStamp {
            if let dt = DeviceTime(ts, clockFlaggedUnreliable: deviceClockNotSet) { m.deviceTime = dt }
            else { m.statuses.append(ts.isUnknown ? .deviceTimeUnknown : .deviceTimeInvalid) }
        }
        return m
    }
}

func plxNormalized(spo2: MedicalFloat, pr: MedicalFloat, pai: MedicalFloat?, status: UInt16?, dss: UInt32?) -> DecodedMeasurement {
    var obs = [makeObservation(.pulseOximetrySpO2, spo2, .percent), makeObservation(.pulseOximetryPulseRate, pr, .perMinute)]
    if let pai { obs.append(makeObservation(.pulseOximetryPerfusionIndex, pai, .percent)) }
    if let override = PLXStatus.valueOverride(status) {
        obs = obs.map { var o = $0; o.value = .unavailable(override); return o }
    }
    var statuses: [ProfileStatus] = []
    if let status { statuses += PLXStatus.measurementStatuses(status) }
    if let dss { statuses += PLXStatus.deviceAndSensorStatuses(dss) }
    return DecodedMeasurement(observations: obs, statuses: statuses, isPatientData: PLXStatus.isPatientData(status))
}

/// PLX Continuous Measurement 0x2A5F. GSS §3.171; reference §5.2. No time stamp (reception time).
///
/// `Flags | SpO2PR-Normal | [Fast] | [Slow] | [Meas Status u16] | [DSS u24] | [PAI SFLOAT]`.
public struct PLXContinuousMeasurement: Hashable, Sendable {
    public var flags: UInt8
    public var spo2: MedicalFloat
    public var pulseRate: MedicalFloat
    public struct SpO2PR: Hashable, Sendable {
        public var spo2: MedicalFloat
        public var pulseRate: MedicalFloat
    }
    public var fast: SpO2PR?
    public var slow: SpO2PR?
    public var measurementStatus: UInt16?
    public var deviceAndSensorStatus: UInt32?
    public var pulseAmplitudeIndex: MedicalFloat?

    public static func decode(_ bytes: [UInt8]) throws -> PLXContinuousMeasurement {
        var r = ByteReader(bytes)
        let flags = try r.u8("flags")
        let spo2 = try r.sfloat("spo2 normal")
        let pr = try r.sfloat("pulse rate normal")
        let fast = flags & 0x01 != 0 ? SpO2PR(spo2: try r.sfloat("spo2 fast"), pulseRate: try r.sfloat("pulse rate fast")) : nil
        let slow = flags & 0x02 != 0 ? SpO2PR(spo2: try r.sfloat("spo2 slow"), pulseRate: try r.sfloat("pulse rate slow")) : nil
        let ms = flags & 0x04 != 0 ? try r.u16le("measurement status") : nil
        let dss = flags & 0x08 != 0 ? try r.u24le("device and sensor status") : nil
        let pai = flags & 0x10 != 0 ? try r.sfloat("pulse amplitude index") : nil
        return PLXContinuousMeasurement(flags: flags, spo2: spo2, pulseRate: pr, fast: fast, slow: slow,
                                        measurementStatus: ms, deviceAndSensorStatus: dss, pulseAmplitudeIndex: pai)
    }

    /// The normal SpO2/PR pair as observations (fast/slow modality codes are unverified, §5.4,
    /// so they stay in `fast`/`slow` and are not published as observations).
    public var normalized: DecodedMeasurement {
        plxNormalized(spo2: spo2, pr: pulseRate, pai: pulseAmplitudeIndex, status: measurementStatus, dss: deviceAndSensorStatus)
    }

}

/// PLX Features 0x2A60. GSS §3.170; reference §5.4.
/// `Supported Features u16 | [Measurement Status Support u16] | [Device&Sensor Status Support u24]`.
public struct PLXFeatures: Hashable, Sendable {
    public var supportedFeatures: UInt16
    public var measurementStatusSupport: UInt16?
    public var deviceAndSensorStatusSupport: UInt32?

    public static func decode(_ bytes: [UInt8]) throws -> PLXFeatures {
        var r = ByteReader(bytes)
        let f = try r.u16le("supported features")
        let ms = f & 0x01 != 0 ? try r.u16le("measurement status support") : nil
        let dss = f & 0x02 != 0 ? try r.u24le("device and sensor status support") : nil
        return PLXFeatures(supportedFeatures: f, measurementStatusSupport: ms, deviceAndSensorStatusSupport: dss)
    }

    public var measurementStorage: Bool { supportedFeatures & (1 << 2) != 0 }
    public var spotCheckTimestamp: Bool { supportedFeatures & (1 << 3) != 0 }
    public var fastSupported: Bool { supportedFeatures & (1 << 4) != 0 }
    public var slowSupported: Bool { supportedFeatures & (1 << 5) != 0 }
    public var pulseAmplitudeIndex: Bool { supportedFeatures & (1 << 6) != 0 }
    public var multipleBonds: Bool { supportedFeatures & (1 << 7) != 0 }
}
