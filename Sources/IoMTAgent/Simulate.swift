import IoMTCore
import IoMTSerialSimulators
import IoMTSources

/// `iomt-agent simulate`: the device simulators, for integrators without hardware.
public enum Simulation {
    /// Serial profiles that have a simulator playing them on a pseudo-terminal.
    public static let serialProfiles = ["contec-cms50-legacy", "contec-cms50-v7", "nonin-df2", "masimo-ascii1"]

    /// Starts a simulated serial device of `profile` on a new pseudo-terminal (linked at `link`
    /// if given). Point a `serial:` entry's `port` at the returned player's `pty.slavePath`.
    public static func serial(profile: String, link: String? = nil) throws -> SimulatedSerialDevice {
        let device: any SimulatedDevice
        switch profile {
        case "contec-cms50-legacy": device = ContecLegacySimulator()
        case "contec-cms50-v7": device = ContecV7Simulator()
        case "nonin-df2": device = NoninDF2Simulator()
        case "masimo-ascii1": device = MasimoSimulator()
        default:
            throw ControlCLIError("no simulator for serial profile \(profile); simulated: \(serialProfiles.joined(separator: ", "))")
        }
        let pty = try PtyDevice()
        if let link { try pty.link(at: link) }
        return SimulatedSerialDevice(player: PtyPlayer(device, on: pty))
    }

    /// `count` normalized readings (`iomt-reading/1` JSON, one per line) of a simulated device,
    /// spaced `1/rate` seconds apart starting now. Deterministic for a given seed.
    public static func readings(profile: String, count: Int, rate: Double, patient: String, seed: UInt64,
                                gatewayID: String = "simulated", clock: any WallClock = SystemWallClock()) throws -> [String] {
        guard let p = SimulatedProfile(rawValue: profile) else {
            throw ControlCLIError("unknown simulator profile \(profile); known: \(SimulatedProfile.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let source = SimulatorSource(id: "sim-\(profile)-1", profile: p, patientID: patient, rate: rate, count: count,
                                     seed: seed, clock: clock)
        var ids = ReadingIDGenerator()
        let start = clock.now()
        let stepMs = Int64((1000 / max(rate, 0.001)).rounded())
        return (0..<count).map { i in
            let at = start.adding(milliseconds: Int64(i) * stepMs)
            let r = Reading(id: ids.next(at: at), gatewayID: gatewayID, sequence: UInt64(i + 1), body: source.reading(index: i, at: at))
            return String(decoding: WireFormat.json(r), as: UTF8.self)
        }
    }
}

/// A simulator playing on a pseudo-terminal.
public struct SimulatedSerialDevice: Sendable {
    let player: PtyPlayer
    /// The pseudo-terminal's path (`/dev/pts/N`): use it as a `serial:` entry's `port`.
    public var path: String { player.pty.slavePath }
    public func stop() { _ = player.stop() }
}
