import Testing
@testable import IoMTHCI

@Suite struct BDAddressTests {
    @Test func textRoundTripIsMostSignificantFirst() throws {
        let a = try #require(BDAddress("C0:11:22:33:44:5f"))
        #expect(a.bytes == [0x5F, 0x44, 0x33, 0x22, 0x11, 0xC0])
        #expect(a.description == "C0:11:22:33:44:5F")
        #expect(a.randomSubtype == .staticAddress)
        #expect(BDAddress("C0:11:22:33:44") == nil)
        #expect(BDAddress("C0:11:22:33:44:GG") == nil)
        #expect(BDAddress(wireBytes: [1, 2, 3]) == nil)
    }

    @Test func uuid16And128FormsAreEqual() throws {
        let short = BluetoothUUID(0x180D)
        let long = try #require(BluetoothUUID(wireBytes: BluetoothUUID.base[0..<12] + [0x0D, 0x18, 0, 0]))
        #expect(short == long)
        #expect(short.uuid16 == 0x180D)
        #expect(short.description == "0x180D")
        #expect(short.shortestWireBytes == [0x0D, 0x18])
        let custom = try #require(BluetoothUUID(wireBytes: (0..<16).map { UInt8($0) }))
        #expect(custom.uuid16 == nil)
        #expect(custom.description == "0F0E0D0C-0B0A-0908-0706-050403020100")
        #expect(BluetoothUUID(wireBytes: [1, 2, 3]) == nil)
    }
}
