from typing_extensions import Buffer

def rpis_into(teks: Buffer, firsts: Buffer, counts: Buffer, out: Buffer, /) -> None: ...
def rpis_probe(
    teks: Buffer,
    firsts: Buffer,
    counts: Buffer,
    out: Buffer,
    bitmap: Buffer,
    shift: int,
    hits: Buffer,
    /,
) -> int: ...
