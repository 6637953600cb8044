import Testing
@testable import IoMTHCI

@Suite struct AdvertisingDataTests {
    @Test func accessorsReadEveryStructureType() throws {
        let b = hex("020106") + hex("05 03 0918 0d18") + hex("05 05 78563412") + [17, 0x07] + Array(1...16)
            + hex("04 08 41 42 43") + hex("05 09 54 68 65 72") + hex("02 0a f4") + hex("05 16 0918 aa bb")
            + [19, 0x21] + Array(repeating: 0x11, count: 16) + [0xC0, 0xDE]
        let ad = try AdvertisingData.parse(b + hex("03 19 4103") + hex("06 ff 5900 01 02 03"))
        #expect(ad.flags == 0x06)
        #expect(ad.localName == "Ther")  // complete wins over shortened
        #expect(ad.serviceUUIDs.count == 4)
        #expect(ad.serviceUUIDs[0] == BluetoothUUID(0x1809) && ad.serviceUUIDs[1] == BluetoothUUID(0x180D))
        #expect(ad.serviceUUIDs[2] == BluetoothUUID(uuid32: 0x1234_5678))
        #expect(ad.serviceUUIDs[3].bytes128 == Array(1...16))
        #expect(ad.txPowerLevel == -12)
        #expect(ad.serviceData16 == [0x1809: [0xAA, 0xBB]])
        #expect(ad.serviceData[BluetoothUUID(0x1809)] == [0xAA, 0xBB])
        let u128 = try #require(BluetoothUUID(wireBytes: Array(repeating: UInt8(0x11), count: 16)))
        #expect(ad.serviceData[u128] == [0xC0, 0xDE] && ad.serviceData.count == 2)
        #expect(ad.appearance == 0x0341)
        #expect(ad.manufacturerData == [0x0059: [1, 2, 3]])
    }

    @Test func shortenedNameWhenNoComplete() throws {
        #expect(try AdvertisingData.parse(hex("04 08 41 42 43")).localName == "ABC")
        #expect(try AdvertisingData.parse(hex("03 09 ff fe")).localName?.isEmpty == false)  // lossy UTF-8
        #expect(try AdvertisingData.parse(hex("020106")).localName == nil)
    }

    @Test func zeroLengthStructureEndsTheData() throws {
        let ad = try AdvertisingData.parse(hex("020106 00 ffffffff"))
        #expect(ad.structures == [ADStructure(type: 1, data: [6])])
        #expect(try AdvertisingData.parse([]).structures.isEmpty)
    }

    @Test func overrunNamesTheField() {
        #expect(throws: (any Error).self) { try AdvertisingData.parse(hex("05 09 41")) }
        do { _ = try AdvertisingData.parse(hex("020106 05 09 41")) } catch { #expect(error.field == "AD_Data") }
        do { _ = try AdvertisingData.parse(hex("020106 05")) } catch { #expect(error.field == "AD_Type") }
    }

    @Test func roundTrip() throws {
        let ad = AdvertisingData([ADStructure(type: 1, data: [6]), ADStructure(type: 9, data: Array("Thermo".utf8)),
                                  ADStructure(type: 0xFF, data: [0x59, 0x00, 9])])
        #expect(try AdvertisingData.parse(ad.bytes) == ad)
    }

    @Test func malformedListsAndShortServiceDataAreSkipped() throws {
        let ad = try AdvertisingData.parse(hex("04 03 0918 01") + hex("02 16 09") + hex("02 ff 59"))
        #expect(ad.serviceUUIDs == [BluetoothUUID(0x1809)])
        #expect(ad.serviceData16.isEmpty && ad.manufacturerData.isEmpty)
    }
}
