import IoMTHCI
import IoMTSMP
import Testing

@Suite struct SMPPDUTests {
    static let features = PairingFeatures(ioCapability: .keyboardDisplay, oobDataFlag: 0,
                                          authReq: [.bonding, .mitm, .secureConnections], maxEncryptionKeySize: 16,
                                          initiatorKeyDistribution: [.encKey, .idKey], responderKeyDistribution: [.encKey, .idKey, .signKey])
    static let k16 = (0..<16).map { UInt8($0) }
    static let k32 = (0..<32).map { UInt8(0x40 + $0) }

    static let all: [SMPPDU] = [
        .pairingRequest(features), .pairingResponse(features), .pairingConfirm(k16), .pairingRandom(k16.reversed()),
        .pairingFailed(.confirmValueFailed), .pairingFailed(SMPReason(rawValue: 0x7F)), .encryptionInformation(ltk: k16),
        .centralIdentification(ediv: 0xBEEF, rand: 0x0123_4567_89AB_CDEF), .identityInformation(irk: k16),
        .identityAddressInformation(LEAddress(BDAddress("C0:11:22:33:44:55")!, type: .randomDevice)),
        .signingInformation(csrk: k16), .securityRequest([.bonding, .mitm]), .pairingPublicKey(x: k32, y: k32.reversed()),
        .pairingDHKeyCheck(k16), .keypressNotification(.digitEntered), .unknown(code: 0x42, parameters: [1, 2, 3]),
    ]

    @Test(arguments: all) func roundTrips(_ pdu: SMPPDU) throws {
        #expect(try SMPPDU.decode(pdu.encode()) == pdu)
    }

    @Test func pairingRequestWireLayoutMatchesPartH351() {
        let pdu = SMPPDU.pairingRequest(PairingFeatures(ioCapability: .noInputNoOutput, authReq: [.bonding, .secureConnections],
                                                        maxEncryptionKeySize: 16, initiatorKeyDistribution: [],
                                                        responderKeyDistribution: [.encKey, .idKey]))
        #expect(pdu.encode() == [0x01, 0x03, 0x00, 0x09, 0x10, 0x00, 0x03])
    }

    @Test func multiOctetFieldsAreLittleEndian() {
        #expect(SMPPDU.centralIdentification(ediv: 0x1234, rand: 0x0102_0304_0506_0708).encode()
                == [0x07, 0x34, 0x12, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01])
        let addr = BDAddress("C0:11:22:33:44:55")!
        #expect(SMPPDU.identityAddressInformation(LEAddress(addr, type: .randomDevice)).encode()
                == [0x09, 0x01, 0x55, 0x44, 0x33, 0x22, 0x11, 0xC0])
    }

    @Test(arguments: [
        ([UInt8](), "code"),
        ([0x01, 0x03, 0x00, 0x09], "max_encryption_key_size"),
        ([0x02, 0x03, 0x00, 0x09, 0x10, 0x00], "responder_key_distribution"),
        ([0x03] + [UInt8](repeating: 0, count: 15), "confirm_value"),
        ([0x04], "random_value"),
        ([0x05], "reason"),
        ([0x06, 1, 2], "long_term_key"),
        ([0x07, 1], "ediv"),
        ([0x07, 1, 2, 3, 4, 5], "rand"),
        ([0x08], "identity_resolving_key"),
        ([0x09], "addr_type"),
        ([0x09, 0, 1, 2, 3], "bd_addr"),
        ([0x0A, 0], "signature_key"),
        ([0x0B], "auth_req"),
        ([0x0C] + [UInt8](repeating: 1, count: 32), "public_key_y"),
        ([0x0C] + [UInt8](repeating: 1, count: 31), "public_key_x"),
        ([0x0D] + [UInt8](repeating: 1, count: 3), "dhkey_check"),
        ([0x0E], "notification_type"),
    ] as [([UInt8], String)])
    func truncatedPDUNamesTheMissingField(_ bytes: [UInt8], _ field: String) {
        do {
            _ = try SMPPDU.decode(bytes)
            Issue.record("decoded truncated \(bytes)")
        } catch {
            #expect(error.field == field)
        }
    }

    @Test func trailingOctetsAreRejected() {
        #expect(throws: SMPDecodeError.trailingBytes(code: 0x05, count: 1)) { try SMPPDU.decode([0x05, 0x04, 0x00]) }
    }

    @Test func securityRequestHelperReadsAuthReq() {
        #expect(PairingInitiator.securityRequestAuth([0x0B, 0x0D]) == [.bonding, .mitm, .secureConnections])
        #expect(PairingInitiator.securityRequestAuth([0x0B]) == nil)
        #expect(PairingInitiator.securityRequestAuth([0x05, 0x08]) == nil)
    }
}
