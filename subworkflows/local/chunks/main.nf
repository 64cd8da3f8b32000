/*
 * Scatter and gather by chunks, shared by the workflows whose steps open every file
 * (validation, features): a channel cut into chunks of lines, one task each, and the
 * chunks' outputs put back in order for the gather. Functions only, no process.
 */

// [ meta, …, file, … ] → one item per chunk of `size` lines of the file at `elem`, with
// meta.chunk = 1, 2, … (from the chunk's name, <name>.<n>.<ext>, that splitText gives it).
def chunks(ch, int size, int elem) {
    ch.splitText(by: size, file: true, elem: elem).map { item ->
        def n = (item[elem].name =~ /\.(\d+)\.[^.]+$/)[0][1] as int
        [ item[0] + [ chunk: n ] ] + item.drop(1)
    }
}

// [ meta + [ chunk: n ], file ] of one meta.id → [ id, [ files in chunk order ] ], once
// every chunk is done: a gather sees the same list whatever order the tasks ended in.
def inChunkOrder(ch) {
    ch.map { meta, file -> [ meta.id, meta.chunk, file ] }
        .groupTuple()
        .map { id, n, files -> [ id, [ n, files ].transpose().sort { it[0] }.collect { it[1] } ] }
}
