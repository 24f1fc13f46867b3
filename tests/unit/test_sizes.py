from zcap.sizes import human_size


def test_sizes_read_as_people_write_them():
    assert human_size(512) == "512 bytes"
    assert human_size(1 << 20) == "1 MiB"
    assert human_size(3 << 29) == "1.5 GiB"
    assert human_size(5 << 50) == "5120 TiB"          # the largest unit, not beyond
