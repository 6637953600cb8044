import IoMTHCI
import Testing
@testable import IoMTATT

@Suite struct GATTClientTests {
    @Test func mtuExchangeTakesTheSmallerOfBothAndIsSentOnce() {
        var h = Harness()
        #expect(h.client.mtu == 23)
        #expect(h.run(.exchangeMTU) == .success(.mtu(185)))
        #expect(h.sentToServer == [[0x02, 0xF7, 0x00]])
        #expect(h.client.mtu == 185 && h.server.mtu == 185)
        #expect(h.run(.exchangeMTU) == .success(.mtu(185)))
        #expect(h.sentToServer.count == 1)
    }

    @Test func mtuRequestNotSupportedKeepsTheDefault() {
        var c = GATTClient()
        _ = c.submit(.exchangeMTU, token: 1, now: 0)
        let a = c.receive(ATTPDU.errorResponse(requestOpcode: 0x02, handle: 0, error: .requestNotSupported).encode(), now: 1)
        #expect(a == [.complete(token: 1, .success(.mtu(23)))])
    }

    @Test func fullDiscoveryFindsServicesCharacteristicsAndDescriptors() throws {
        var h = Harness()
        let services = try #require(try h.run(.discoverPrimaryServices)?.get())
        #expect(services == .services([
            GATTService(uuid: BluetoothUUID(0x180D), start: 1, end: 6),
            GATTService(uuid: BluetoothUUID(0x1809), start: 7, end: 10),
            GATTService(uuid: GATTServerSimulator.customServiceUUID, start: 11, end: 15),
        ]))
        // MTU 23: the two 16-bit services come in one response, the 128-bit one in the next, then
        // attributeNotFound from handle 16.
        #expect(h.sentToServer.count == 3)

        #expect(try h.run(.discoverCharacteristics(start: 1, end: 6))?.get() == .characteristics([
            GATTCharacteristic(declarationHandle: 2, valueHandle: 3, properties: .notify, uuid: BluetoothUUID(0x2A37)),
            GATTCharacteristic(declarationHandle: 5, valueHandle: 6, properties: .read, uuid: BluetoothUUID(0x2A38)),
        ]))
        #expect(try h.run(.discoverCharacteristics(start: 11, end: 15))?.get() == .characteristics([
            GATTCharacteristic(declarationHandle: 12, valueHandle: 13, properties: .read, uuid: GATTServerSimulator.customLongUUID),
            GATTCharacteristic(declarationHandle: 14, valueHandle: 15, properties: [.read, .write], uuid: BluetoothUUID(0x2A39)),
        ]))
        #expect(try h.run(.discoverDescriptors(start: 4, end: 4))?.get()
                == .descriptors([GATTDescriptor(handle: 4, uuid: GATTUUID.clientCharacteristicConfiguration)]))
        #expect(try h.run(.discoverDescriptors(start: 7, end: 6))?.get() == .descriptors([]))
    }

    @Test func discoverServiceByUUIDUsesFindByTypeValue() throws {
        var h = Harness()
        #expect(try h.run(.discoverPrimaryService(uuid: BluetoothUUID(0x1809)))?.get()
                == .services([GATTService(uuid: BluetoothUUID(0x1809), start: 7, end: 10)]))
        #expect(h.sentToServer.first == [0x06, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28, 0x09, 0x18])
        #expect(try h.run(.discoverPrimaryService(uuid: BluetoothUUID(0x1810)))?.get() == .services([]))
    }

    @Test func longReadContinuesWithBlobsUntilAShortChunk() throws {
        var h = Harness()
        #expect(try h.run(.read(handle: 13))?.get() == .value(GATTServerSimulator.longValue))
        // 22 + 22 + 22 + 22 + 12 at MTU 23: one Read and four Read Blobs at offsets 22, 44, 66, 88.
        #expect(h.sentToServer == [[0x0A, 13, 0], [0x0C, 13, 0, 22, 0], [0x0C, 13, 0, 44, 0],
                                   [0x0C, 13, 0, 66, 0], [0x0C, 13, 0, 88, 0]])
    }

    @Test func readEndingOnAChunkBoundaryStopsAtAttributeNotLong() throws {
        var server = GATTServerSimulator.standard()
        server.attributes[12].value = Array(repeating: 7, count: 22)
        var h = Harness(server: server)
        #expect(try h.run(.read(handle: 13))?.get() == .value(Array(repeating: 7, count: 22)))
        #expect(h.sentToServer.count == 2)
    }

    @Test func longReadIsCappedAt512Octets() throws {
        var server = GATTServerSimulator.standard()
        server.attributes[12].value = (0..<600).map { UInt8(truncatingIfNeeded: $0) }
        var h = Harness(server: server)
        let v = try #require(try h.run(.read(handle: 13))?.get())
        #expect(v == .value((0..<512).map { UInt8(truncatingIfNeeded: $0) }))
    }

    @Test func encryptedCharacteristicFailsWithInsufficientEncryptionThenSucceedsAfterPairing() {
        var h = Harness()
        #expect(h.run(.read(handle: 15)) == .failure(.att(.insufficientEncryption, handle: 15)))
        h.server.encrypted = true
        #expect(h.run(.read(handle: 15)) == .success(.value([0x00])))
    }

    @Test func writeAndOversizedWrite() {
        var h = Harness()
        #expect(h.run(.write(handle: 6, value: [0x02])) == .success(.done))
        #expect(h.server.attribute(6)?.value == [0x02])
        #expect(h.run(.write(handle: 6, value: Array(repeating: 1, count: 21))) == .failure(
            .invalidRequest("value of 21 octets exceeds ATT_MTU-3 = 20")))
        #expect(h.run(.writeWithoutResponse(handle: 6, value: [0x03])) == .success(.done))
        #expect(h.server.attribute(6)?.value == [0x03])
        #expect(h.sentToServer.last == [0x52, 0x06, 0x00, 0x03])
    }

    @Test func subscribeThenNotificationsAndConfirmedIndications() {
        var h = Harness()
        #expect(h.run(.subscribe(cccdHandle: 4, indications: false)) == .success(.done))
        #expect(h.run(.subscribe(cccdHandle: 10, indications: true)) == .success(.done))
        #expect(h.server.attribute(4)?.value == [0x01, 0x00])
        #expect(h.server.attribute(10)?.value == [0x02, 0x00])
        h.fromServer(.handleValueNotification(handle: 3, value: [0x00, 75]))
        h.fromServer(.multipleHandleValueNotification([ATTHandleValue(handle: 3, value: [0x00, 76])]))
        let sentBefore = h.sentToServer.count
        h.fromServer(.handleValueIndication(handle: 9, value: [0x00, 0x6E, 0x01, 0x00, 0xFF]))
        #expect(h.events == [.notification(handle: 3, value: [0x00, 75]), .notification(handle: 3, value: [0x00, 76]),
                             .indication(handle: 9, value: [0x00, 0x6E, 0x01, 0x00, 0xFF])])
        #expect(h.sentToServer.count == sentBefore + 1)
        #expect(h.sentToServer.last == [0x1E])
        #expect(h.run(.unsubscribe(cccdHandle: 4)) == .success(.done))
        #expect(h.server.attribute(4)?.value == [0x00, 0x00])
    }

    @Test func afterMTUExchangeTheLongValueComesInOneReadAndWritesMayBeLonger() {
        var h = Harness()
        _ = h.run(.exchangeMTU)
        h.sentToServer.removeAll()
        #expect(h.run(.read(handle: 13)) == .success(.value(GATTServerSimulator.longValue)))
        #expect(h.sentToServer == [[0x0A, 13, 0]])
        #expect(h.run(.write(handle: 13, value: Array(repeating: 9, count: 182))) == .success(.done))
        #expect(h.run(.write(handle: 13, value: Array(repeating: 9, count: 183))) == .failure(
            .invalidRequest("value of 183 octets exceeds ATT_MTU-3 = 182")))
    }

    @Test func notificationsAndIndicationsInterleaveWithAnOutstandingRequest() {
        var c = GATTClient()
        #expect(c.submit(.read(handle: 13), token: 1, now: 0) == [.send([0x0A, 13, 0])])
        #expect(c.receive([0x1B, 3, 0, 0x00, 80], now: 1) == [.notification(handle: 3, value: [0x00, 80])])
        #expect(c.receive([0x1D, 9, 0, 0x01], now: 2) == [.indication(handle: 9, value: [0x01]), .send([0x1E])])
        #expect(c.pendingCount == 1)
        #expect(c.receive([0x0B, 0x05], now: 3) == [.complete(token: 1, .success(.value([0x05])))])
    }

    @Test func writeWithoutResponseGoesOutEvenWhileARequestIsOutstanding() {
        var c = GATTClient()
        _ = c.submit(.read(handle: 13), token: 1, now: 0)
        #expect(c.submit(.writeWithoutResponse(handle: 6, value: [1]), token: 2, now: 0)
                == [.send([0x52, 6, 0, 1]), .complete(token: 2, .success(.done))])
        #expect(c.pendingCount == 1)
    }

    @Test func serviceChangedIndicationReportsTheRangeAndIsConfirmed() {
        var c = GATTClient()
        c.setServiceChangedHandle(0x0020)
        #expect(c.receive([0x1D, 0x20, 0x00, 0x01, 0x00, 0xFF, 0xFF], now: 0)
                == [.serviceChanged(start: 1, end: 0xFFFF), .send([0x1E])])
        // A malformed Service Changed value is passed on raw; a handle-less indication is still confirmed.
        #expect(c.receive([0x1D, 0x20, 0x00, 0x01], now: 0) == [.indication(handle: 0x20, value: [0x01]), .send([0x1E])])
        #expect(c.receive([0x1D, 0x20], now: 0) == [.send([0x1E])])
        #expect(c.receive([0x1B, 0x20], now: 0) == [])
    }

    @Test func requestsWaitForTheOutstandingOne() {
        var c = GATTClient()
        let first = c.submit(.read(handle: 3), token: 1, now: 0)
        let second = c.submit(.read(handle: 6), token: 2, now: 0)
        #expect(first == [.send([0x0A, 3, 0])])
        #expect(second == [])
        #expect(c.pendingCount == 2)
        #expect(c.receive([0x0B, 0xAA], now: 5) == [.complete(token: 1, .success(.value([0xAA]))), .send([0x0A, 6, 0])])
    }

    @Test func transactionTimeoutFailsEverythingAndStopsTheBearer() {
        var c = GATTClient()
        _ = c.submit(.read(handle: 3), token: 1, now: 1_000)
        _ = c.submit(.read(handle: 6), token: 2, now: 2_000)
        #expect(c.nextDeadline == 31_000)
        #expect(c.tick(now: 30_999) == [])
        #expect(c.tick(now: 31_000) == [.complete(token: 1, .failure(.timeout)), .complete(token: 2, .failure(.timeout)),
                                        .transactionTimeout])
        #expect(c.nextDeadline == nil)
        #expect(c.submit(.read(handle: 3), token: 3, now: 31_001) == [.complete(token: 3, .failure(.timeout))])
        // A late response is dropped; notifications still flow.
        #expect(c.receive([0x0B, 0xAA], now: 31_002) == [])
        #expect(c.strayResponses == 1)
        #expect(c.receive([0x1B, 3, 0, 1], now: 31_003) == [.notification(handle: 3, value: [1])])
    }

    @Test func deadlineRestartsWithEachRequestOfAProcedure() {
        var h = Harness()
        h.now = 5_000
        _ = h.run(.read(handle: 13))
        #expect(h.client.nextDeadline == nil)
        var c = GATTClient()
        _ = c.submit(.read(handle: 13), token: 1, now: 0)
        _ = c.receive([0x0B] + Array(repeating: 1, count: 22), now: 20_000)
        #expect(c.nextDeadline == 50_000)
    }

    @Test func malformedResponseFailsOnlyTheCurrentProcedureAndTheNextProceeds() {
        var c = GATTClient()
        _ = c.submit(.discoverCharacteristics(start: 1, end: 6), token: 1, now: 0)
        _ = c.submit(.read(handle: 6), token: 2, now: 0)
        // Read By Type Response whose list does not divide by the length.
        let a = c.receive([0x09, 0x07, 0x02, 0x00, 0x10, 0x03, 0x00, 0x37], now: 1)
        #expect(a.count == 2)
        guard case .complete(1, .failure(.malformedResponse(let why))) = a.first else {
            Issue.record("expected malformed, got \(a)"); return
        }
        #expect(why.contains("attribute data list"))
        #expect(a.last == .send([0x0A, 6, 0]))
        #expect(c.receive([0x0B, 0x01], now: 2) == [.complete(token: 2, .success(.value([0x01])))])
    }

    @Test func badCharacteristicDeclarationAndUnexpectedResponsesFailSpecifically() {
        var c = GATTClient()
        _ = c.submit(.discoverCharacteristics(start: 1, end: 6), token: 1, now: 0)
        // A 4-octet declaration value (needs 5 or 19).
        #expect(c.receive([0x09, 0x06, 0x02, 0x00, 0x10, 0x03, 0x00, 0x37], now: 1)
                == [.complete(token: 1, .failure(.malformedResponse("characteristic declaration: 4 octets, expected 5 or 19")))])
        _ = c.submit(.read(handle: 3), token: 2, now: 2)
        #expect(c.receive([0x13], now: 3) == [.complete(token: 2, .failure(.unexpectedResponse(opcode: 0x13)))])
        _ = c.submit(.read(handle: 3), token: 3, now: 4)
        #expect(c.receive([0x01, 0x12, 0x03, 0x00, 0x0E], now: 5)
                == [.complete(token: 3, .failure(.unexpectedResponse(opcode: 0x01)))])
        #expect(c.pendingCount == 0)
    }

    @Test func serviceDiscoveryThatGoesBackwardsFailsInsteadOfLooping() {
        var c = GATTClient()
        _ = c.submit(.discoverPrimaryServices, token: 1, now: 0)
        _ = c.receive(ATTPDU.readByGroupTypeResponse([ATTGroupData(handle: 1, endGroup: 10, value: [0x0D, 0x18])]).encode(), now: 1)
        let a = c.receive(ATTPDU.readByGroupTypeResponse([ATTGroupData(handle: 5, endGroup: 8, value: [0x0D, 0x18])]).encode(), now: 2)
        guard case .complete(1, .failure(.malformedResponse))? = a.first else { Issue.record("\(a)"); return }
        #expect(c.pendingCount == 0)
    }

    @Test func overlappingEntriesInOneResponseAreMalformed() {
        var c = GATTClient()
        _ = c.submit(.discoverPrimaryServices, token: 1, now: 0)
        let a = c.receive(ATTPDU.readByGroupTypeResponse([ATTGroupData(handle: 1, endGroup: 10, value: [0x0D, 0x18]),
                                                          ATTGroupData(handle: 10, endGroup: 12, value: [0x09, 0x18])]).encode(), now: 1)
        #expect(a == [.complete(token: 1, .failure(.malformedResponse("service handle range 10...12 out of order")))])
        _ = c.submit(.discoverDescriptors(start: 4, end: 8), token: 2, now: 2)
        let b = c.receive(ATTPDU.findInformationResponse(format: 1, entries: [ATTHandleUUID(handle: 5, uuid: BluetoothUUID(0x2902)),
                                                                               ATTHandleUUID(handle: 5, uuid: BluetoothUUID(0x2901))]).encode(), now: 3)
        #expect(b == [.complete(token: 2, .failure(.malformedResponse("descriptor handle 5 out of order or outside 4...8")))])
    }

    @Test func disconnectedFailsEverythingOutstandingAndQueued() {
        var c = GATTClient()
        _ = c.submit(.discoverPrimaryServices, token: 1, now: 0)
        _ = c.submit(.read(handle: 3), token: 2, now: 0)
        _ = c.submit(.write(handle: 4, value: [1, 0]), token: 3, now: 0)
        #expect(c.disconnected() == [.complete(token: 1, .failure(.disconnected)), .complete(token: 2, .failure(.disconnected)),
                                     .complete(token: 3, .failure(.disconnected))])
        #expect(c.nextDeadline == nil)
        #expect(c.submit(.read(handle: 3), token: 4, now: 1) == [.complete(token: 4, .failure(.disconnected))])
    }

    @Test func serverSideAnswersPeerRequests() {
        var c = GATTClient(preferredMTU: 247)
        #expect(c.receive([0x02, 0x00, 0x01], now: 0) == [.send([0x03, 0xF7, 0x00])])
        #expect(c.mtu == 247)
        #expect(c.receive(ATTPDU.readByGroupTypeRequest(start: 1, end: 0xFFFF, groupType: GATTUUID.primaryService).encode(), now: 0)
                == [.send([0x01, 0x10, 0x01, 0x00, 0x0A])])
        #expect(c.receive([0x0A, 0x05, 0x00], now: 0) == [.send([0x01, 0x0A, 0x05, 0x00, 0x06])])
        #expect(c.receive([0x18, 0x01], now: 0) == [.send([0x01, 0x18, 0x00, 0x00, 0x06])])
        // Unknown request opcode → requestNotSupported; commands and unknown commands are ignored.
        #expect(c.receive([0x30, 0x01], now: 0) == [.send([0x01, 0x30, 0x00, 0x00, 0x06])])
        #expect(c.receive([0x52, 0x05, 0x00, 0x01], now: 0) == [])
        #expect(c.receive([0x70, 0x01], now: 0) == [])
        // Malformed request → invalidPDU.
        #expect(c.receive([0x0A, 0x05], now: 0) == [.send([0x01, 0x0A, 0x00, 0x00, 0x04])])
        // An unexpected confirmation is counted, not answered.
        #expect(c.receive([0x1E], now: 0) == [])
        #expect(c.unexpectedConfirmations == 1)
    }

    @Test func peerMTURequestBelowOurPreferenceSetsTheSmaller() {
        var c = GATTClient(preferredMTU: 247)
        _ = c.receive([0x02, 0x40, 0x00], now: 0)
        #expect(c.mtu == 64)
    }

    @Test func invalidRangesAreRejectedWithoutSending() {
        var c = GATTClient()
        #expect(c.submit(.discoverCharacteristics(start: 7, end: 6), token: 1, now: 0)
                == [.complete(token: 1, .failure(.invalidRequest("handle range 7...6")))])
        #expect(c.submit(.read(handle: 0), token: 2, now: 0) == [.complete(token: 2, .failure(.invalidRequest("handle 0x0000")))])
    }

    @Test func randomResponsesNeverWedgeTheQueue() {
        var c = GATTClient()
        var seed: UInt64 = 7
        var completed: Set<UInt64> = []
        func note(_ actions: [GATTAction]) {
            for a in actions { if case .complete(let t, _) = a { completed.insert(t) } }
        }
        for token in UInt64(1)...500 {
            note(c.submit(.discoverPrimaryServices, token: token, now: 0))
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            var b: [UInt8] = [[0x01, 0x11, 0x09, 0x0B, 0x05][Int(seed >> 61) % 5]]
            for i in 0..<Int((seed >> 8) % 12) { b.append(UInt8(truncatingIfNeeded: seed >> UInt64(i * 4))) }
            note(c.receive(b, now: 1))
        }
        // Whatever is still running ends with attributeNotFound; every token completes exactly once.
        for _ in 0..<2_000 where c.pendingCount > 0 { note(c.receive([0x01, 0x10, 0x01, 0x00, 0x0A], now: 2)) }
        #expect(completed.count == 500)
        #expect(c.pendingCount == 0)
    }
}

@Suite struct GATTDiscoveryTests {
    static func discover(_ d: inout GATTDiscovery, _ h: inout Harness) -> GATTDiscovery.Step {
        var step = d.start()
        var rounds = 0
        while case .next(let p) = step, rounds < 100 {
            rounds += 1
            guard let r = h.run(p) else { return .failed(.invalidRequest("no completion for \(p)")) }
            step = d.handle(r)
        }
        return step
    }

    @Test func discoversWantedServicesWithCCCDHandles() throws {
        var h = Harness()
        var d = GATTDiscovery(wantedServices: [BluetoothUUID(0x180D), BluetoothUUID(0x1809)])
        guard case .finished(let db) = Self.discover(&d, &h) else { Issue.record("discovery did not finish"); return }
        #expect(db.services.map(\.uuid) == [BluetoothUUID(0x180D), BluetoothUUID(0x1809)])
        let hr = try #require(db.characteristic(BluetoothUUID(0x2A37), in: BluetoothUUID(0x180D)))
        #expect(hr.valueHandle == 3 && hr.cccdHandle == 4 && hr.properties == .notify)
        let temp = try #require(db.characteristic(BluetoothUUID(0x2A1C), in: BluetoothUUID(0x1809)))
        #expect(temp.valueHandle == 9 && temp.cccdHandle == 10)
        // 0x2A38 is read-only: no descriptor discovery for it.
        #expect(db.characteristic(BluetoothUUID(0x2A38), in: BluetoothUUID(0x180D))?.descriptors == [])
        #expect(db.service(GATTServerSimulator.customServiceUUID) == nil)
        #expect(db.serviceChangedHandle == nil)
    }

    @Test func discoversEverythingWithAllDescriptors() throws {
        var h = Harness()
        var d = GATTDiscovery(allDescriptors: true)
        guard case .finished(let db) = Self.discover(&d, &h) else { Issue.record("discovery did not finish"); return }
        #expect(db.services.count == 3)
        let long = try #require(db.characteristic(GATTServerSimulator.customLongUUID, in: GATTServerSimulator.customServiceUUID))
        #expect(long.valueHandle == 13 && long.descriptors == [])
        // The CCCD after 0x2A37 is found; 0x2A38's value handle 6 ends the service, so nothing is asked for it.
        #expect(db.characteristic(BluetoothUUID(0x2A37), in: BluetoothUUID(0x180D))?.cccdHandle == 4)
        #expect(!h.sentToServer.contains([0x04, 0x07, 0x00, 0x06, 0x00]))
    }

    @Test func failurePropagates() {
        var d = GATTDiscovery()
        _ = d.start()
        #expect(d.handle(.failure(.timeout)) == .failed(.timeout))
    }
}
