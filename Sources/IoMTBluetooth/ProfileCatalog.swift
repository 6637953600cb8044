import IoMTCore
import IoMTHCI
import IoMTHealthProfiles
import Synchronization

/// One link's decoder for one measurement characteristic (a profile may keep state across
/// notifications, e.g. GHS segment reassembly).
public final class MeasurementSession: Sendable {
    public let decode: @Sendable ([UInt8]) throws -> [DecodedMeasurement]
    public init(_ decode: @escaping @Sendable ([UInt8]) throws -> [DecodedMeasurement]) { self.decode = decode }
}

/// Which GATT characteristics carry a health profile's measurements, and how to decode them.
///
/// The decoders themselves live in IoMTHealthProfiles (pure, tested against the reference's
/// example bytes); this table only says where on a peripheral to find their input
/// (the Bluetooth SIG service and characteristic assigned numbers, reference §1–§8).
public struct BLEProfile: Sendable {
    public struct Measurement: Sendable {
        /// Characteristic UUID (16-bit SIG assigned number).
        public var characteristic: UInt16
        /// The profile delivers it by indication (confirmed) rather than notification.
        public var indicated: Bool
        /// Every measurement one notification or indication carries (CGM packs several records).
        public var decodeAll: @Sendable ([UInt8]) throws -> [DecodedMeasurement]
        /// Decoding state for one link (GHS segments are reassembled per connection); stateless
        /// profiles share `decodeAll`.
        public var makeSession: @Sendable () -> MeasurementSession

        public init(characteristic: UInt16, indicated: Bool, decode: @escaping @Sendable ([UInt8]) throws -> DecodedMeasurement) {
            self.init(characteristic: characteristic, indicated: indicated, decodeAll: { [try decode($0)] })
        }

        public init(characteristic: UInt16, indicated: Bool, decodeAll: @escaping @Sendable ([UInt8]) throws -> [DecodedMeasurement]) {
            self.characteristic = characteristic
            self.indicated = indicated
            self.decodeAll = decodeAll
            self.makeSession = { MeasurementSession(decodeAll) }
        }

        public init(characteristic: UInt16, indicated: Bool, makeSession: @escaping @Sendable () -> MeasurementSession) {
            self.characteristic = characteristic
            self.indicated = indicated
            self.decodeAll = { try makeSession().decode($0) }
            self.makeSession = makeSession
        }
    }

    /// The profile name readings carry (`device.profile`), e.g. `heart-rate`.
    public var name: String
    /// Primary service UUID (16-bit).
    public var service: UInt16
    public var measurements: [Measurement]
    /// Stored records are downloaded with the Record Access Control Point before the link
    /// goes live (glucose: `GlucoseDownload`), rather than only subscribed to.
    public var usesRecordAccess = false

    /// Every connected-device profile the agent serves. The Generic Health Sensor needs
    /// procedures beyond subscribe-and-decode and is not served over a link yet.
    public static let all: [BLEProfile] = [
        BLEProfile(name: "heart-rate", service: 0x180D, measurements: [
            .init(characteristic: 0x2A37, indicated: false) { try HeartRateMeasurement.decode($0).normalized },
        ]),
        BLEProfile(name: "thermometer", service: 0x1809, measurements: [
            .init(characteristic: 0x2A1C, indicated: true) { try TemperatureMeasurement.decode($0).normalized },
        ]),
        BLEProfile(name: "blood-pressure", service: 0x1810, measurements: [
            .init(characteristic: 0x2A35, indicated: true) { try BloodPressureMeasurement.decode($0).normalized },
        ]),
        BLEProfile(name: "pulse-oximeter", service: 0x1822, measurements: [
            .init(characteristic: 0x2A5E, indicated: true) { try PLXSpotCheckMeasurement.decode($0).normalized },
            .init(characteristic: 0x2A5F, indicated: false) { try PLXContinuousMeasurement.decode($0).normalized },
        ]),
        BLEProfile(name: "weight-scale", service: 0x181D, measurements: [
            .init(characteristic: 0x2A9D, indicated: true) { try WeightMeasurement.decode($0).normalized },
        ]),
        BLEProfile(name: "body-composition", service: 0x181B, measurements: [
            .init(characteristic: 0x2A9C, indicated: true) { try BodyCompositionMeasurement.decode($0).normalized },
        ]),
        // CGM Measurement 0x2AA7: one or more records per notification, each with its E2E-CRC
        // verified when its size says it carries one (reference §8). Times are the gateway's
        // receipt (the session start time is not read yet), so backfilled records are not
        // requested: only live notifications are served.
        // Generic Health Sensor 0x1840, Live Health Observations 0x2B8B (reference §9): segments
        // (1-octet header: first, last, rolling counter) reassembled per link, then one
        // IEEE 11073-10101 observation or bundle. Stored observations (RACP) are not fetched.
        BLEProfile(name: "generic-health-sensor", service: 0x1840, measurements: [
            .init(characteristic: 0x2B8B, indicated: false, makeSession: {
                let reassembler = Mutex(GHSSegmentReassembler())
                return MeasurementSession { segment in
                    let whole = try reassembler.withLock { r throws -> [UInt8]? in
                        do { return try r.append(segment) } catch { r.reset(); throw error }
                    }
                    guard let message = whole else { return [] }
                    return [GenericHealthSensor.normalized(try GenericHealthSensor.decode(message).observation)]
                }
            }),
        ]),
        BLEProfile(name: "cgm", service: 0x181F, measurements: [
            .init(characteristic: 0x2AA7, indicated: false, decodeAll: { bytes in
                try CGMMeasurement.decode(bytes).map { $0.normalized() }
            }),
        ]),
        // Glucose Service 0x1808 (reference §6): measurements 0x2A18 and contexts 0x2A34 are
        // notified; stored records are asked for on the RACP 0x2A52 (GlucoseDownload.swift).
        BLEProfile(name: "glucose", service: 0x1808, measurements: [
            .init(characteristic: 0x2A18, indicated: false) { try GlucoseMeasurement.decode($0).normalized },
        ], usesRecordAccess: true),
    ]

    public static func named(_ name: String) -> BLEProfile? { all.first { $0.name == name } }

    /// The profile that would serve a device advertising these services (first match wins).
    public static func serving(_ services: [BluetoothUUID]) -> BLEProfile? {
        all.first { p in services.contains(BluetoothUUID(p.service)) }
    }
}
