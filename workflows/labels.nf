/*
 * LABELS: segmentation labels for each training set, from the reconstruction (particles + map)
 * or, without a map, discs at the coordinates.
 */
include { PIXER_LABELS } from './modules/pixer_labels'

workflow LABELS {
    take:
    training   // [meta, micrographs, particles, map or [], interference masks or []]

    main:
    PIXER_LABELS(training.map { meta, mics, particles, map, junk -> [meta, mics, particles, map] })

    emit:
    labels = PIXER_LABELS.out.labels   // [meta, labels folder]
}
