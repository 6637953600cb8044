import IoMTHCI
import Testing
@testable import IoMTATT

@Suite struct ATTPDUTests {
    static let uuid128 = BluetoothUUID(wireBytes: (0..<16).map { UInt8($0 + 1) })!

    static let pdus: [ATTPDU] = [
        .errorResponse(requestOpcode: 0x0A, handle: 0x0015, error: .insufficientEncryption),
        .errorResponse(requestOpcode: 0x12, handle: 0x0001, error: ATTErrorCode(rawValue: 0x85)),
        .exchangeMTURequest(clientRxMTU: 517),
        .exchangeMTUResponse(serverRxMTU: 185),
        .findInformationRequest(start: 1, end: 0xFFFF),
        .findInformationResponse(format: 1, entries: [ATTHandleUUID(handle: 3, uuid: BluetoothUUID(0x2902)),
                                                       ATTHandleUUID(handle: 4, uuid: BluetoothUUID(0x2901))]),
        .findInformationResponse(format: 2, entries: [ATTHandleUUID(handle: 9, uuid: uuid128)]),
        .findByTypeValueRequest(start: 1, end: 0xFFFF, type: 0x2800, value: [0x0D, 0x18]),
        .findByTypeValueResponse([ATTHandleRange(found: 1, groupEnd: 6), ATTHandleRange(found: 20, groupEnd: 0xFFFF)]),
        .readByTypeRequest(start: 1, end: 0xFFFF, type: BluetoothUUID(0x2803)),
        .readByTypeRequest(start: 1, end: 0xFFFF, type: uuid128),
        .readByTypeResponse([ATTHandleValue(handle: 2, value: [0x10, 0x03, 0x00, 0x37, 0x2A]),
                             ATTHandleValue(handle: 5, value: [0x02, 0x06, 0x00, 0x38, 0x2A])]),
        .readRequest(handle: 3),
        .readResponse(value: [1, 2, 3]),
        .readResponse(value: []),
        .readBlobRequest(handle: 13, offset: 22),
        .readBlobResponse(value: [9, 8]),
        .readMultipleRequest(handles: [3, 6, 9]),
        .readMultipleResponse(values: [1, 2, 3, 4]),
        .readByGroupTypeRequest(start: 1, end: 0xFFFF, groupType: BluetoothUUID(0x2800)),
        .readByGroupTypeResponse([ATTGroupData(handle: 1, endGroup: 6, value: [0x0D, 0x18]),
                                  ATTGroupData(handle: 7, endGroup: 10, value: [0x09, 0x18])]),
        .readByGroupTypeResponse([ATTGroupData(handle: 11, endGroup: 0xFFFF, value: uuid128.bytes128)]),
        .writeRequest(handle: 4, value: [0x01, 0x00]),
        .writeResponse,
        .writeCommand(handle: 4, value: [0xAA]),
        .signedWriteCommand(handle: 4, value: [0xAA, 0xBB], signature: Array(repeating: 0x5A, count: 12)),
        .prepareWriteRequest(handle: 13, offset: 18, value: [1, 2]),
        .prepareWriteResponse(handle: 13, offset: 18, value: [1, 2]),
        .executeWriteRequest(flags: 1),
        .executeWriteResponse,
        .handleValueNotification(handle: 3, value: [0x00, 72]),
        .handleValueIndication(handle: 9, value: [0x00, 0x6D, 0x01, 0x00, 0xFF]),
        .handleValueConfirmation,
        .readMultipleVariableRequest(handles: [3, 9]),
        .readMultipleVariableResponse(values: [[0x00, 72], [], [1, 2, 3]]),
        .multipleHandleValueNotification([ATTHandleValue(handle: 3, value: [0x00, 72]), ATTHandleValue(handle: 9, value: [1])]),
        .unknown(opcode: 0x30, parameters: [1, 2]),
        .unknown(opcode: 0x7F, parameters: []),
    ]

    @Test(arguments: pdus)
    func everyPDURoundTrips(_ pdu: ATTPDU) throws {
        let bytes = pdu.encode()
        #expect(bytes.first == pdu.opcode)
        #expect(try ATTPDU.decode(bytes) == pdu)
    }

    @Test func knownByteVectors() throws {
        // Exchange MTU Request with Client Rx MTU 512 = 02 00 02 (PureSwift/GATT GATTTests.testMTUExchange;
        // Vol 3 Part F 3.4.2.1).
        #expect(ATTPDU.exchangeMTURequest(clientRxMTU: 512).encode() == [0x02, 0x00, 0x02])
        // Error Response (3.4.1.1): opcode, request opcode, handle LE, code.
        #expect(try ATTPDU.decode([0x01, 0x10, 0x01, 0x00, 0x0A])
                == .errorResponse(requestOpcode: 0x10, handle: 1, error: .attributeNotFound))
        // Read By Group Type Request for primary services (Vol 3 Part G 4.4.1): 10 0100 FFFF 0028.
        #expect(ATTPDU.readByGroupTypeRequest(start: 1, end: 0xFFFF, groupType: GATTUUID.primaryService).encode()
                == [0x10, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28])
        // Read By Type Response with 7-octet characteristic declarations (Vol 3 Part G 3.3.1).
        let rsp: [UInt8] = [0x09, 0x07, 0x02, 0x00, 0x10, 0x03, 0x00, 0x37, 0x2A]
        #expect(try ATTPDU.decode(rsp) == .readByTypeResponse([ATTHandleValue(handle: 2, value: [0x10, 0x03, 0x00, 0x37, 0x2A])]))
        // Write Command has the command flag (bit 6); Signed Write both flags (3.3.1).
        #expect(ATTOpcode.isCommand(ATTOpcode.writeCommand) && ATTOpcode.isCommand(ATTOpcode.signedWriteCommand))
        #expect(!ATTOpcode.isCommand(ATTOpcode.writeRequest))
    }

    @Test(arguments: [
        ([UInt8](), "opcode"),
        ([0x01, 0x0A, 0x03, 0x00], "error code"),
        ([0x02, 0x17], "client rx MTU"),
        ([0x03], "server rx MTU"),
        ([0x04, 0x01, 0x00], "ending handle"),
        ([0x05], "format"),
        ([0x08, 0x01, 0x00, 0xFF, 0xFF], "attribute type"),
        ([0x09], "length"),
        ([0x0A, 0x03], "attribute handle"),
        ([0x0C, 0x03, 0x00, 0x16], "value offset"),
        ([0x11], "length"),
        ([0x12, 0x04], "attribute handle"),
        ([0x16, 0x04, 0x00, 0x01], "value offset"),
        ([0x18], "flags"),
        ([0x1B, 0x03], "attribute handle"),
        ([0x1D], "attribute handle"),
        ([0xD2, 0x04, 0x00, 1, 2, 3], "authentication signature"),
        ([0x23, 0x03, 0x00, 0x05, 0x00, 1, 2], "attribute value"),
        ([0x21, 0x02], "value length"),
    ] as [([UInt8], String)])
    func truncatedPDUNamesTheMissingField(_ bytes: [UInt8], _ field: String) {
        do {
            let pdu = try ATTPDU.decode(bytes)
            Issue.record("decoded \(pdu)")
        } catch {
            #expect(error.field == field)
        }
    }

    @Test(arguments: [
        ([0x09, 0x07, 0x02, 0x00, 0x10, 0x03, 0x00, 0x37, 0x2A, 0x05, 0x00], "attribute data list"),
        ([0x09, 0x07], "attribute data list"),
        ([0x09, 0x01, 0x02], "length"),
        ([0x11, 0x06, 0x01, 0x00, 0x06, 0x00, 0x0D, 0x18, 0x07, 0x00, 0x0A], "attribute data list"),
        ([0x11, 0x03, 0x01, 0x00, 0x06], "length"),
        ([0x05, 0x01, 0x03, 0x00, 0x02, 0x29, 0x04], "information data"),
        ([0x05, 0x02, 0x03, 0x00, 0x02, 0x29], "information data"),
        ([0x05, 0x03, 0x03, 0x00, 0x02, 0x29], "format"),
        ([0x07, 0x01, 0x00, 0x06], "handles information list"),
        ([0x0E, 0x01, 0x00], "set of handles"),
        ([0x10, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28, 0x00], "attribute group type"),
    ] as [([UInt8], String)])
    func unevenListsAndBadSizesNameTheField(_ bytes: [UInt8], _ field: String) {
        do {
            let pdu = try ATTPDU.decode(bytes)
            Issue.record("decoded \(pdu)")
        } catch {
            #expect(error.field == field)
        }
    }

    @Test func fixedSizePDUsRejectTrailingOctets() {
        #expect(throws: ATTDecodeError(field: "exchange MTU", reason: "1 unexpected trailing octet(s)")) {
            try ATTPDU.decode([0x02, 0x17, 0x00, 0x00])
        }
        #expect(throws: ATTDecodeError.self) { try ATTPDU.decode([0x13, 0x00]) }
        #expect(throws: ATTDecodeError.self) { try ATTPDU.decode([0x1E, 0x00]) }
    }

    @Test func errorCodeNamesAndApplicationRange() {
        #expect(ATTErrorCode.insufficientEncryption.rawValue == 0x0F)
        #expect(ATTErrorCode.insufficientAuthentication.isSecurityError)
        #expect(ATTErrorCode(rawValue: 0x80).isApplicationError && ATTErrorCode(rawValue: 0x9F).isApplicationError)
        #expect(!ATTErrorCode(rawValue: 0xA0).isApplicationError)
        #expect(ATTErrorCode.cccdImproperlyConfigured.rawValue == 0xFD && ATTErrorCode.outOfRange.rawValue == 0xFF)
        #expect(ATTErrorCode(rawValue: 0x42).description == "error 0x42")
    }

    @Test func randomBytesNeverTrap() {
        var seed: UInt64 = 99
        var decoded = 0
        for _ in 0..<5000 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let n = Int(seed >> 59)
            var b: [UInt8] = [UInt8(truncatingIfNeeded: seed >> 20) & 0x3F]
            for i in 0..<n { b.append(UInt8(truncatingIfNeeded: seed >> UInt64(i * 5 % 56))) }
            if let p = try? ATTPDU.decode(b) { decoded += 1; _ = p.encode() }
        }
        #expect(decoded > 0)
    }
}
