/*
 * SAMPLESHEET: datasets from a CSV, one row per dataset (columns: docs/pipeline.md).
 * An empty optional cell becomes [] (an absent optional input); a missing required cell or
 * file stops the run with one line naming the row and the column.
 */
def cell(row, key) {
    if (!row[key]) error "samplesheet: dataset '${row.id}': column '${key}' is empty"
    row[key]
}

def optionalFile(row, key) {
    row[key] ? file(row[key], checkIfExists: true) : []
}

workflow SAMPLESHEET {
    take:
    csv   // path of the samplesheet

    main:
    datasets = Channel.fromPath(csv, checkIfExists: true).splitCsv(header: true, strip: true).map { row ->
        [[id: cell(row, 'id'), diameter: cell(row, 'diameter') as double, apix: row.apix ? row.apix as double : null],
         file(cell(row, 'micrographs'), checkIfExists: true),
         row.train_micrographs ? file(row.train_micrographs, checkIfExists: true) : file(row.micrographs),
         optionalFile(row, 'particles'), optionalFile(row, 'map'), optionalFile(row, 'junk_masks'),
         optionalFile(row, 'truth')]
    }

    emit:
    // [meta, train micrographs, particles, map, interference masks]: rows with particles
    training = datasets.filter { it[3] }.map { meta, mics, train_mics, particles, map, junk, truth ->
        [meta, train_mics, particles, map, junk] }
    // [meta, micrographs to pick]
    picking = datasets.map { meta, mics, train_mics, particles, map, junk, truth -> [meta, mics] }
    // [meta, true coordinates of the picked micrographs]: rows with truth
    truth = datasets.filter { it[6] }.map { meta, mics, train_mics, particles, map, junk, truth -> [meta, truth] }
}
