import Foundation
import IoMTCore
import IoMTSerial
@testable import IoMTSerialPort
import IoMTSerialSimulators
import Logging

/// A sink that keeps every reading and accepts it.
actor CollectingSink: ReadingSink {
    private(set) var readings: [DeviceReading] = []
    func submit(_ reading: DeviceReading) async -> IngestOutcome {
        readings.append(reading)
        return .accepted(id: ReadingID(high: 0, low: UInt64(readings.count)), sequence: UInt64(readings.count))
    }
}

/// Waits (test side) until `condition` holds or `seconds` pass; returns whether it held.
func eventually(_ seconds: Double = 30, _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "iomt-serial-" + UUID().uuidString
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

let testLogger: Logger = {
    var l = Logger(label: "serial-test")
    l.logLevel = .warning
    return l
}()

extension DeviceReading {
    func value(_ code: MDCCode) -> ObservationValue? { observations.first { $0.code == code }?.value }
}
