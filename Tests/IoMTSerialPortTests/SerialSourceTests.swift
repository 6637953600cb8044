import Foundation
import IoMTCore
import IoMTSerial
@testable import IoMTSerialPort
import IoMTSerialSimulators
import Testing

@Suite("SerialSource end to end over pseudo-terminals with device simulators", .serialized)
struct SerialSourceTests {
    @Test("Contec V7: the source sends the start command, then readings arrive once a second with a 60-sample pleth")
    func contecV7() async throws {
        let dir = temporaryDirectory()
        let path = dir + "/oximeter-1"
        let pty = try PtyDevice()
        try pty.link(at: path)
        let player = PtyPlayer(ContecV7Simulator(spo2: 96, pulse: 65), on: pty)
        let source = SerialSource(configuration: .init(id: "ox-1", patientID: "P-1", profile: .contecV7, port: .path(path)),
                                  logger: testLogger)
        let sink = CollectingSink()
        let task = Task { try await source.run(into: sink) }
        let got = await eventually { await sink.readings.count >= 2 }
        let statusAtEnd = source.status
        let countAtEnd = await sink.readings.count
        task.cancel()
        _ = await task.result
        let device = player.stop() as? ContecV7Simulator
        pty.unplug()
        #expect(got, "\(statusAtEnd), readings \(countAtEnd), device sent \(player.bytesSent) bytes")
        #expect((device?.startsReceived ?? 0) >= 1)
        let readings = await sink.readings
        for r in readings {
            #expect(r.device.transport == .serial)
            #expect(r.device.profile == "contec-cms50-v7")
            #expect(r.patientID == "P-1")
            #expect(r.timeQuality == .gatewayReceipt)
            #expect(r.value(.pulseOximetrySpO2) == .numeric(96))
            #expect(r.value(.pulseOximetryPulseRate) == .numeric(65))
            #expect(r.receivedAt.millisecondsSinceEpoch - r.measuredAt.millisecondsSinceEpoch == 983)
            if case .waveform(let samples, _)? = r.value(.pulseOximetryPleth) { #expect(samples.count == 60) } else {
                Issue.record("no pleth batch")
            }
        }
        if case .connected(let p, let settings) = source.status.link {
            #expect(p == path)
            #expect(settings == "115200 8N1")
        }
    }

    @Test("Contec old protocol with start-up noise and truncated frames; unplug, then replug on a new pty behind the same symlink")
    func unplugReplug() async throws {
        let dir = temporaryDirectory()
        let path = dir + "/oximeter-2"
        let pty1 = try PtyDevice()
        try pty1.link(at: path)
        let player1 = PtyPlayer(ContecLegacySimulator(spo2: 97, pulse: 72,
                                                      faults: Faults(startupNoise: [0x00, 0x13, 0x11, 0x7F, 0x85], truncateEvery: 170)), on: pty1)
        let source = SerialSource(configuration: .init(id: "ox-2", patientID: "P-2", profile: .contecLegacy, port: .path(path)),
                                  logger: testLogger)
        let sink = CollectingSink()
        let task = Task { try await source.run(into: sink) }
        #expect(await eventually { await sink.readings.count >= 2 })
        // Truncated frames (every 170 bytes) are discarded while this device plays; the start-up
        // noise may already be flushed when the port opens, so wait for a truncation rather than
        // assume one happened by now (it did not, once, on a loaded CI machine).
        #expect(await eventually { source.status.bytesDiscarded > 0 })
        player1.stop()
        let unpluggedAt = ContinuousClock.now
        pty1.unplug()
        #expect(await eventually { source.status.disconnects == 1 })
        #expect(ContinuousClock.now - unpluggedAt < .seconds(2), "unplug is noticed at once (POLLHUP/EIO), not after a timeout")
        // Disconnected with the reason, or (on a loaded machine) already waiting for the device again.
        switch source.status.link {
        case .disconnected(let reason): #expect(reason.contains("errno") || reason.contains("hung up"))
        case .waiting: break
        default: Issue.record("status is \(source.status.link)")
        }
        let before = await sink.readings.count

        let pty2 = try PtyDevice()
        let player2 = PtyPlayer(ContecLegacySimulator(spo2: 95, pulse: 80), on: pty2)
        try pty2.link(at: path)
        #expect(await eventually { await sink.readings.count >= before + 2 })
        task.cancel()
        _ = await task.result
        player2.stop()
        pty2.unplug()

        let readings = await sink.readings
        #expect(readings.prefix(before).allSatisfy { $0.value(.pulseOximetrySpO2) == .numeric(97) && $0.value(.pulseOximetryPulseRate) == .numeric(72) })
        #expect(readings.dropFirst(before).allSatisfy { $0.value(.pulseOximetrySpO2) == .numeric(95) && $0.value(.pulseOximetryPulseRate) == .numeric(80) })
        #expect(source.status.disconnects == 1)
    }

    @Test("match by USB identity: waits while absent, picks the device up when its node appears (Nonin #2 with bad checksums)")
    func usbMatchHotPlug() async throws {
        let root = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
        let scanner = SysfsScanner(root: root + "/sys", devRoot: root + "/dev")
        let source = SerialSource(configuration: .init(id: "nonin-1", patientID: "P-3", profile: .noninDF2,
                                                       port: .usb(USBMatch(vendorID: 0x1c3d, productID: 0x0003, serial: "X1")),
                                                       sysfs: scanner),
                                  logger: testLogger)
        let sink = CollectingSink()
        let task = Task { try await source.run(into: sink) }
        #expect(await eventually { if case .waiting = source.status.link { true } else { false } })

        let pty = try PtyDevice()
        let player = PtyPlayer(NoninDF2Simulator(hr: 61, spo2: 99, faults: Faults(startupNoise: [0x01, 0x80, 0x22], corruptEvery: 5)), on: pty)
        try FakeSysfs(root: root).add(tty: "ttyACM0", vendor: "1c3d", product: "0003", serial: "X1", usbSerialPortDir: false)
        try FileManager.default.createSymbolicLink(atPath: root + "/dev/ttyACM0", withDestinationPath: pty.slavePath)
        #expect(await eventually { await sink.readings.count >= 2 })
        task.cancel()
        _ = await task.result
        player.stop()
        pty.unplug()
        for r in await sink.readings {
            #expect(r.value(.pulseOximetryPulseRate) == .numeric(61))
            #expect(r.value(.pulseOximetrySpO2) == .numeric(99))
        }
    }

    @Test("two devices match the same USB identity: neither is opened (no guessing which patient's device it is)")
    func ambiguousMatch() async throws {
        let root = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
        let fs = FakeSysfs(root: root)
        try fs.add(tty: "ttyUSB0", vendor: "10c4", product: "ea60", serial: "0001", usbSerialPortDir: true)
        try fs.add(tty: "ttyUSB1", vendor: "10c4", product: "ea60", serial: "0001", usbSerialPortDir: true)
        let a = try PtyDevice(), b = try PtyDevice()
        try a.link(at: root + "/dev/ttyUSB0")
        try b.link(at: root + "/dev/ttyUSB1")
        let pa = PtyPlayer(ContecLegacySimulator(), on: a), pb = PtyPlayer(ContecLegacySimulator(), on: b)
        let source = SerialSource(configuration: .init(id: "ox-9", patientID: "P-9", profile: .contecLegacy,
                                                       port: .usb(USBMatch(vendorID: 0x10c4, productID: 0xea60)),
                                                       sysfs: SysfsScanner(root: root + "/sys", devRoot: root + "/dev")),
                                  logger: testLogger)
        let sink = CollectingSink()
        let task = Task { try await source.run(into: sink) }
        let refused = await eventually(10) {
            if case .waiting(let reason) = source.status.link { reason.contains("2 USB serial devices match") } else { false }
        }
        try await Task.sleep(for: .milliseconds(1500))
        task.cancel()
        _ = await task.result
        pa.stop(); pb.stop(); a.unplug(); b.unplug()
        #expect(refused)
        #expect(await sink.readings.isEmpty)
    }

    @Test("OneTouch: download with device-corrected times; after a replug only the new record comes (watermark)")
    func oneTouchWatermark() async throws {
        let dir = temporaryDirectory()
        let path = dir + "/meter-1"
        let records = [
            OneTouchMeterSimulator.StoredRecord(date: "03/07/10", time: "11:09:13", mgPerDL: 86),
            OneTouchMeterSimulator.StoredRecord(date: "03/06/10", time: "08:00:00", mgPerDL: 120),
        ]
        let pty1 = try PtyDevice()
        try pty1.link(at: path)
        let player1 = PtyPlayer(OneTouchMeterSimulator(records: records), on: pty1)
        let source = SerialSource(configuration: .init(id: "meter-1", patientID: "P-4", profile: .oneTouchUltra2, port: .path(path),
                                                       storedCursor: nil),
                                  logger: testLogger)
        let sink = CollectingSink()
        let task = Task { try await source.run(into: sink) }
        #expect(await eventually { await sink.readings.count >= 2 })
        player1.stop()
        pty1.unplug()
        #expect(await eventually { source.status.disconnects == 1 })

        let pty2 = try PtyDevice()
        let player2 = PtyPlayer(OneTouchMeterSimulator(records: [.init(date: "03/08/10", time: "07:00:00", mgPerDL: 140)] + records), on: pty2)
        try pty2.link(at: path)
        #expect(await eventually { await sink.readings.count >= 3 })
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        _ = await task.result
        player2.stop()
        pty2.unplug()

        let readings = await sink.readings
        #expect(readings.map { $0.observations[0].value } == [.numeric(120), .numeric(86), .numeric(140)])
        #expect(readings.allSatisfy { $0.timeQuality == .deviceCorrected && $0.device.serialNumber == "ZSK2326BY" })
        // Meter clock 2017-01-03 17:59:55 read at receivedAt: the record is shifted by the same offset.
        let clock = DeviceDateTime(year: 2017, month: 1, day: 3, hour: 17, minute: 59, second: 55)!.asIfUTC
        let record = DeviceDateTime(year: 2010, month: 3, day: 7, hour: 11, minute: 9, second: 13)!.asIfUTC
        let r = readings[1]
        let expected = record.millisecondsSinceEpoch + (r.receivedAt.millisecondsSinceEpoch - clock.millisecondsSinceEpoch)
        #expect(abs(r.measuredAt.millisecondsSinceEpoch - expected) < 2000)
        // Each record carries the watermark after it, to be stored in the reading's transaction.
        let last = try #require(readings.last?.sourceCursor.flatMap(WatermarkCursor.decode))
        #expect(last.serial == "ZSK2326BY")
        #expect(last.mark.time == DeviceDateTime(year: 2010, month: 3, day: 8, hour: 7, minute: 0, second: 0))

        // A restart resumes from the stored cursor: the meter's three records are not downloaded again.
        let pty3 = try PtyDevice()
        let player3 = PtyPlayer(OneTouchMeterSimulator(records: [.init(date: "03/08/10", time: "07:00:00", mgPerDL: 140)] + records), on: pty3)
        try pty3.link(at: path)
        let restarted = SerialSource(configuration: .init(id: "meter-1", patientID: "P-4", profile: .oneTouchUltra2, port: .path(path),
                                                          storedCursor: readings.last?.sourceCursor),
                                     logger: testLogger)
        let sink2 = CollectingSink()
        let task2 = Task { try await restarted.run(into: sink2) }
        #expect(await eventually { restarted.status.serialNumber == "ZSK2326BY" })
        try await Task.sleep(for: .milliseconds(1500))
        task2.cancel()
        _ = await task2.result
        player3.stop()
        pty3.unplug()
        #expect(await sink2.readings.isEmpty, "nothing new on the meter: nothing downloaded")
    }

    @Test("nothing decodes: the profile's next line settings are tried (Contec 19200 8O1 → 4800 8N1)")
    func lineSettingsFallback() async throws {
        let dir = temporaryDirectory()
        let path = dir + "/oximeter-3"
        let pty = try PtyDevice()
        try pty.link(at: path)
        // ASCII text is all "noise" to the Contec decoder: no frame ever decodes.
        let player = PtyPlayer(MasimoSimulator(), on: pty)
        var profile = SerialProfile.contecLegacy
        profile.noFrameTimeoutMilliseconds = 300
        let source = SerialSource(configuration: .init(id: "ox-3", patientID: "P-5", profile: profile, port: .path(path)),
                                  logger: testLogger)
        let sink = CollectingSink()
        let task = Task { try await source.run(into: sink) }
        let switched = await eventually(5) {
            if case .connected(_, let s) = source.status.link { s == "4800 8N1" } else { false }
        }
        task.cancel()
        _ = await task.result
        player.stop()
        pty.unplug()
        #expect(switched)
        #expect(await sink.readings.isEmpty)
    }
}
