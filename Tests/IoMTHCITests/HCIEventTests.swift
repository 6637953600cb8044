import Testing
@testable import IoMTHCI

/// Decodes an H4 event packet (indicator 0x04 included) as it came from a controller.
func decodeH4Event(_ h4: [UInt8]) throws -> HCIEvent {
    var f = H4Framer()
    let packets = try f.push(h4)
    guard packets.count == 1, case .event(let code, let params) = packets[0] else {
        throw H4Error.framerFailed
    }
    return try HCIEvent.decode(code: code, parameters: params)
}

func decodeError(_ code: UInt8, _ params: [UInt8]) -> HCIDecodeError? {
    do {
        _ = try HCIEvent.decode(code: code, parameters: params)
        return nil
    } catch { return error }
}

@Suite struct HCIEventTests {
    // Real events from the Bumble 0.0.236 controller (Fixtures/capture_bumble_events.py).
    static let bumbleExtendedAdvertisingReport = hex(
        "043e2e0d010100015544332211c001010000ce000000000000000000140201060c09496f4d542d546865726d6f03030918")
    static let bumbleLEConnectionComplete = hex("043e130100010000015544332211c018000000f40100")
    static let bumbleResetComplete = hex("040e0401030c00")
    static let bumbleCreateConnectionStatus = hex("040f0400010d20")

    @Test func bumbleCommandCompleteAndStatus() throws {
        #expect(try decodeH4Event(Self.bumbleResetComplete) == .commandComplete(numHCICommandPackets: 1, opcode: .reset, returnParameters: [0]))
        #expect(try decodeH4Event(Self.bumbleCreateConnectionStatus) == .commandStatus(status: .success, numHCICommandPackets: 1, opcode: .leCreateConnection))
    }

    @Test func bumbleExtendedAdvertisingReportDecodes() throws {
        guard case .leAdvertisingReports(let reports) = try decodeH4Event(Self.bumbleExtendedAdvertisingReport) else {
            Issue.record("not an advertising report"); return
        }
        let r = try #require(reports.first)
        #expect(reports.count == 1)
        #expect(r.eventType == 0x0001 && !r.fromLegacyEvent && !r.isLegacy)
        #expect(r.isConnectable && !r.isScanResponse && !r.isDirected)
        #expect(r.address.description == "C0:11:22:33:44:55/random")
        #expect(r.rssi == -50 && r.txPower == 0 && r.primaryPHY == 1 && r.secondaryPHY == 1)
        let ad = try AdvertisingData.parse(r.data)
        #expect(ad.localName == "IoMT-Thermo")
        #expect(ad.flags == 0x06)
        #expect(ad.serviceUUIDs == [BluetoothUUID(0x1809)])
    }

    @Test func bumbleLEConnectionCompleteDecodes() throws {
        guard case .leConnectionComplete(let c) = try decodeH4Event(Self.bumbleLEConnectionComplete) else {
            Issue.record("not a connection complete"); return
        }
        #expect(c.status == .success && c.handle.rawValue == 1 && c.isCentral)
        #expect(c.peer.description == "C0:11:22:33:44:55/random")
        #expect(c.interval == 0x18 && c.latency == 0 && c.supervisionTimeout == 0x1F4)
        #expect(c.localResolvablePrivateAddress == nil && c.subevent == 0x01)
    }

    @Test func enhancedConnectionCompleteV1AndV2() throws {
        let base = hex("00 4000 01 00 665544332211")
        let rpas = hex("a1a2a3a4a5a6 000000000000")
        let tail = hex("2800 0000 c800 01")
        guard case .leConnectionComplete(let v1) = try HCIEvent.decode(code: 0x3E, parameters: [0x0A] + base + rpas + tail) else {
            Issue.record("v1"); return
        }
        #expect(v1.handle.rawValue == 0x40 && v1.role == 1 && !v1.isCentral && v1.peer.type == .publicDevice)
        #expect(v1.localResolvablePrivateAddress?.description == "A6:A5:A4:A3:A2:A1")
        #expect(v1.peerResolvablePrivateAddress == nil)
        #expect(v1.interval == 0x28 && v1.supervisionTimeout == 0xC8 && v1.centralClockAccuracy == 1)
        guard case .leConnectionComplete(let v2) = try HCIEvent.decode(code: 0x3E, parameters: [0x29] + base + rpas + tail + hex("03 ffff")) else {
            Issue.record("v2"); return
        }
        #expect(v2.advertisingHandle == 3 && v2.syncHandle == 0xFFFF && v2.subevent == 0x29)
        #expect(decodeError(0x3E, [0x29] + base + rpas + tail + [3])?.underlying.field == "Sync_Handle")
    }

    @Test func legacyAdvertisingReportsSeveralPerEvent() throws {
        let r1 = hex("00 01 c6c5c4c3c2c1 03 020106 c4")
        let r2 = hex("04 00 665544332211 00 7f")
        guard case .leAdvertisingReports(let rs) = try HCIEvent.decode(code: 0x3E, parameters: [0x02, 0x02] + r1 + r2) else {
            Issue.record("not reports"); return
        }
        #expect(rs.count == 2)
        #expect(rs[0].isLegacy && rs[0].isConnectable && rs[0].isScannable && rs[0].rssi == -60 && rs[0].data == [2, 1, 6])
        #expect(rs[1].isScanResponse && !rs[1].isConnectable && rs[1].rssi == nil && rs[1].data.isEmpty)
        #expect(rs[0].txPower == nil && rs[0].primaryPHY == nil)
    }

    @Test func advertisingDataLengthOverrunNamesTheField() {
        let bad = hex("02 01 00 c6c5c4c3c2c1 09 0201") // Data_Length 9, only 2 bytes
        #expect(decodeError(0x3E, bad)?.underlying.field == "Data")
        #expect(decodeError(0x3E, bad)?.packet == "LE Advertising Report")
        var ext = Array(Self.bumbleExtendedAdvertisingReport.dropFirst(3))
        ext.removeLast(5)
        #expect(decodeError(0x3E, ext)?.underlying.field == "Data")
        #expect(decodeError(0x3E, Array(ext.prefix(11)))?.underlying.field == "Primary_PHY")
    }

    @Test func extendedReportTxPowerAndRssiNotAvailable() throws {
        let r = hex("1b00 00 665544332211 01 00 ff 7f 7f 0000 00 000000000000 00")
        guard case .leAdvertisingReports(let rs) = try HCIEvent.decode(code: 0x3E, parameters: [0x0D, 0x01] + r) else {
            Issue.record("not reports"); return
        }
        #expect(rs[0].rssi == nil && rs[0].txPower == nil && rs[0].isLegacy && rs[0].isConnectable && rs[0].isScanResponse)
    }

    @Test func linkEventsDecode() throws {
        #expect(try HCIEvent.decode(code: 0x05, parameters: hex("00 4000 13"))
                == .disconnectionComplete(status: .success, handle: ConnectionHandle(rawValue: 0x40), reason: .remoteUserTerminated))
        #expect(try HCIEvent.decode(code: 0x08, parameters: hex("00 4000 01"))
                == .encryptionChange(status: .success, handle: ConnectionHandle(rawValue: 0x40), enabled: true, keySize: nil))
        #expect(try HCIEvent.decode(code: 0x59, parameters: hex("00 4000 01 10"))
                == .encryptionChange(status: .success, handle: ConnectionHandle(rawValue: 0x40), enabled: true, keySize: 16))
        #expect(try HCIEvent.decode(code: 0x30, parameters: hex("06 4000"))
                == .encryptionKeyRefreshComplete(status: .pinOrKeyMissing, handle: ConnectionHandle(rawValue: 0x40)))
        #expect(try HCIEvent.decode(code: 0x13, parameters: hex("02 4000 0300 4100 0100"))
                == .numberOfCompletedPackets([CompletedPackets(handle: ConnectionHandle(rawValue: 0x40), count: 3),
                                              CompletedPackets(handle: ConnectionHandle(rawValue: 0x41), count: 1)]))
        #expect(try HCIEvent.decode(code: 0x10, parameters: [0x42]) == .hardwareError(0x42))
        #expect(try HCIEvent.decode(code: 0x1A, parameters: [0x01]) == .dataBufferOverflow(linkType: 1))
        #expect(try HCIEvent.decode(code: 0x3E, parameters: hex("03 00 4000 1800 0000 f401"))
                == .leConnectionUpdateComplete(status: .success, handle: ConnectionHandle(rawValue: 0x40), interval: 0x18, latency: 0, supervisionTimeout: 0x1F4))
        #expect(try HCIEvent.decode(code: 0x3E, parameters: hex("04 00 4000 ff49010000000000"))
                == .leReadRemoteFeaturesComplete(status: .success, handle: ConnectionHandle(rawValue: 0x40), features: 0x149FF))
        #expect(try HCIEvent.decode(code: 0x3E, parameters: hex("05 4000 0807060504030201 efbe"))
                == .leLongTermKeyRequest(handle: ConnectionHandle(rawValue: 0x40), random: 0x0102030405060708, ediv: 0xBEEF))
        #expect(try HCIEvent.decode(code: 0x3E, parameters: hex("06 4000 0600 0c00 0000 c800"))
                == .leRemoteConnectionParameterRequest(handle: ConnectionHandle(rawValue: 0x40), intervalMin: 6, intervalMax: 12, latency: 0, timeout: 200))
        #expect(try HCIEvent.decode(code: 0x3E, parameters: hex("07 4000 fb00 4808 1b00 4801"))
                == .leDataLengthChange(handle: ConnectionHandle(rawValue: 0x40), maxTxOctets: 251, maxTxTime: 2120, maxRxOctets: 27, maxRxTime: 328))
    }

    @Test func truncatedKnownEventsNameEventAndField() {
        #expect(decodeError(0x0E, [1, 3])?.underlying.field == "Command_Opcode")
        #expect(decodeError(0x0E, [1, 3])?.packet == "Command Complete")
        #expect(decodeError(0x0F, [0, 1])?.underlying.field == "Command_Opcode")
        #expect(decodeError(0x05, hex("00 4000"))?.underlying.field == "Reason")
        #expect(decodeError(0x59, hex("00 4000 01"))?.underlying.field == "Encryption_Key_Size")
        #expect(decodeError(0x13, hex("02 4000 0300 41"))?.underlying.field == "Connection_Handle")
        #expect(decodeError(0x3E, [])?.underlying.field == "Subevent_Code")
        #expect(decodeError(0x3E, hex("05 4000 0807"))?.underlying.field == "Random_Number")
        let conn = Array(Self.bumbleLEConnectionComplete.dropFirst(3))
        #expect(decodeError(0x3E, Array(conn.dropLast()))?.underlying.field == "Central_Clock_Accuracy")
        #expect(decodeError(0x3E, Array(conn.dropLast()))?.description.contains("LE Connection Complete") == true)
    }

    @Test func unknownEventsAndSubeventsSurvive() throws {
        #expect(try HCIEvent.decode(code: 0xFF, parameters: [1, 2, 3]) == .unknown(code: 0xFF, parameters: [1, 2, 3]))
        #expect(try HCIEvent.decode(code: 0x57, parameters: []) == .unknown(code: 0x57, parameters: []))
        #expect(try HCIEvent.decode(code: 0x3E, parameters: [0x14, 9, 9]) == .leMeta(subevent: 0x14, parameters: [9, 9]))
    }

    @Test func commandCompleteKeepsReturnParametersAndIgnoresNothing() throws {
        #expect(try HCIEvent.decode(code: 0x0E, parameters: hex("01 0910 00 f5f4f3f2f1f0"))
                == .commandComplete(numHCICommandPackets: 1, opcode: .readBDADDR, returnParameters: hex("00 f5f4f3f2f1f0")))
        #expect(try HCIEvent.decode(code: 0x0E, parameters: hex("05 0000"))
                == .commandComplete(numHCICommandPackets: 5, opcode: .noOperation, returnParameters: []))
    }
}
