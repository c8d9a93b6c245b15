/*
 * SAMPLESHEET: datasets from a CSV, one row per dataset (columns: docs/pipeline.md; the
 * `dataset` column and relative paths as in pixer benchmark's samplesheets, so one CSV can
 * serve both). Relative paths resolve against the samplesheet's folder. An empty optional
 * cell becomes [] (an absent optional input); an empty required cell or a missing file stops
 * the run with one line naming the dataset and the column.
 */
def cell(row, key) {
    if (!row[key]) error "samplesheet: dataset '${row.dataset}': column '${key}' is empty"
    row[key]
}

def fileOf(dir, row, key) {
    file(dir.resolve(cell(row, key)).toString(), checkIfExists: true)
}

def optionalFile(dir, row, key) {
    row[key] ? fileOf(dir, row, key) : []
}

workflow SAMPLESHEET {
    take:
    csv   // path of the samplesheet

    main:
    sheet = file(csv, checkIfExists: true)
    dir = sheet.toAbsolutePath().parent
    datasets = Channel.fromPath(sheet).splitCsv(header: true, strip: true).map { row ->
        [[id: cell(row, 'dataset'), diameter: cell(row, 'diameter') as double, apix: row.apix ? row.apix as double : null],
         fileOf(dir, row, 'micrographs'),
         row.train_micrographs ? fileOf(dir, row, 'train_micrographs') : fileOf(dir, row, 'micrographs'),
         optionalFile(dir, row, 'particles'), optionalFile(dir, row, 'map'), optionalFile(dir, row, 'junk_masks'),
         optionalFile(dir, row, 'truth')]
    }

    // [meta, train micrographs, particles, map, interference masks]: rows with particles
    training = datasets.filter { it[3] }.map { meta, mics, train_mics, particles, map, junk, true_coords ->
        [meta, train_mics, particles, map, junk] }
    // [meta, micrographs to pick]
    picking = datasets.map { meta, mics, train_mics, particles, map, junk, true_coords -> [meta, mics] }
    // [meta, true coordinates of the picked micrographs]: rows with truth
    truth = datasets.filter { it[6] }.map { meta, mics, train_mics, particles, map, junk, true_coords ->
        [meta, true_coords] }

    emit:
    training
    picking
    truth
}
